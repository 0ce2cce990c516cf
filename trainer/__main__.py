"""``python -m trainer ...`` (and ``torchrun -m trainer run ...``)."""
from trainer.cli import app

app(prog_name="trainer")
