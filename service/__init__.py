"""Online: the HTTP service, its batcher, metrics and evaluation jobs; and the ``apudae`` command."""
