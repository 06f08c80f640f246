"""The DAE of Table 1 / eq. 6 and the training noise of eq. 5."""
import torch

from apudae.models.dae import DAEConfig, DenoisingAutoEncoder, add_training_noise, reconstruction_error


def test_output_shape_and_range_for_grey_and_colour():
    for config, shape in [(DAEConfig(1, 5, width=8), (3, 1, 28, 28)), (DAEConfig(3, 3, width=8), (2, 3, 32, 32))]:
        dae = DenoisingAutoEncoder(config).eval()
        out = dae(torch.rand(shape))
        assert out.shape == shape
        assert out.min() >= 0 and out.max() <= 1


def test_layer_layout_matches_table_1():
    dae = DenoisingAutoEncoder(DAEConfig(in_channels=3, depth=15))
    convs = [m for m in dae.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    deconvs = [m for m in dae.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == 15 and len(deconvs) == 14
    assert convs[0].stride == (2, 2) and all(c.stride == (1, 1) for c in convs[1:])
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.out_channels == 64 for c in convs)
    assert dae.head.stride == (2, 2) and dae.head.out_channels == 3 and dae.head.output_padding == (1, 1)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in dae.modules()) == 29


def test_skip_connections_carry_encoder_maps_to_the_decoder():
    """Zeroing every decoder layer leaves the output depending on the input only through the skips (eq. 6)."""
    torch.manual_seed(0)
    dae = DenoisingAutoEncoder(DAEConfig(1, 3, width=8)).eval()
    for block in dae.decoder:
        for p in block.parameters():
            torch.nn.init.zeros_(p)  # conv weights and BN weight/bias -> the block outputs 0
    x = torch.rand(2, 1, 28, 28)
    encoded = x
    for layer in dae.encoder:
        encoded = layer(encoded)
        first = encoded if layer is dae.encoder[0] else first
    expected = torch.sigmoid(dae.head(first))  # d_1 = 0 + e_1 after the last skip
    assert torch.allclose(dae(x), expected, atol=1e-6)


def test_dropout_is_configurable_and_off_in_eval():
    dae = DenoisingAutoEncoder(DAEConfig(1, 2, width=8, dropout=0.5))
    assert any(isinstance(m, torch.nn.Dropout2d) and m.p == 0.5 for m in dae.modules())
    dae.eval()
    x = torch.rand(1, 1, 28, 28)
    assert torch.equal(dae(x), dae(x))


def test_noise_schedule_draws_sigma_per_image_within_sigma_max():
    """eq. 5: X + sigma * N(0,1), sigma ~ U[0, sigma_max] per image."""
    x = torch.zeros(4000, 1, 8, 8)
    noisy = add_training_noise(x, 0.3, torch.Generator().manual_seed(0))
    per_image_std = noisy.flatten(1).std(dim=1)
    assert per_image_std.max() < 0.3 * 1.3  # no image gets more than sigma_max (with sampling slack)
    assert abs(per_image_std.mean().item() - 0.15) < 0.01  # E[sigma] = sigma_max / 2
    assert per_image_std.min() < 0.02  # sigma near 0 occurs
    assert torch.equal(noisy, add_training_noise(x, 0.3, torch.Generator().manual_seed(0)))


def test_reconstruction_error_is_the_per_image_mean_of_squares():
    """eq. 7 on a hand-checked case: a DAE that outputs 0.5 everywhere."""
    class Half(torch.nn.Module):
        def forward(self, x):
            return torch.full_like(x, 0.5)

    x = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2), torch.tensor([[[0.5, 0.5], [1.0, 0.0]]])])
    assert torch.allclose(reconstruction_error(Half(), x), torch.tensor([0.25, 0.25, 0.125]))
