"""One run: a config prepared into objects (setup), trained and recorded (lifecycle, callbacks), and the
outputs made from its folder (view, outputs)."""

from digitlab.run.lifecycle import resume, start
from digitlab.run.outputs import OUTPUTS, write_outputs
from digitlab.run.setup import Setup, prepare
from digitlab.run.view import RunView, evaluate_run

__all__ = ["resume", "start", "OUTPUTS", "write_outputs", "Setup", "prepare", "RunView", "evaluate_run"]
