"""Classifiers take [0, 1] images, normalise inside, and flip-average only at test time."""
import torch

from apudae.models.classifiers import ClassifierConfig, ImageClassifier


def test_normalisation_is_inside_the_model():
    model = ImageClassifier(ClassifierConfig("mnist_cnn", 1, 10, 4, (0.25,), (0.5,))).eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(model(x), model.net((x - 0.25) / 0.5))


def test_flip_average_is_mirror_symmetric_in_eval_and_off_in_training():
    torch.manual_seed(0)
    model = ImageClassifier(ClassifierConfig("resnet9", 3, 10, 4, (0.5,) * 3, (0.5,) * 3, flip_average=True))
    x = torch.rand(2, 3, 32, 32)
    model.eval()
    assert torch.allclose(model(x), model(x.flip(3)), atol=1e-5)
    assert torch.allclose(model(x), (model.net(model.normalize(x)) + model.net(model.normalize(x.flip(3)))) / 2)
    model.train()
    assert model(x).shape == (2, 10)
    model.eval()
    plain = ImageClassifier(ClassifierConfig("resnet9", 3, 10, 4, (0.5,) * 3, (0.5,) * 3)).eval()
    plain.load_state_dict(model.state_dict())
    assert torch.allclose(plain(x), model.net(model.normalize(x)))
