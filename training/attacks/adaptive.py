"""Old home of the EOT attacks, kept importable: they live in ``training.attacks.eot``."""
from apudae.training.attacks.eot import BPDAEOT, EOT_DRAWS, PGDEOT, DefendedClassifier, eot_batch

__all__ = ["BPDAEOT", "EOT_DRAWS", "PGDEOT", "DefendedClassifier", "eot_batch"]
