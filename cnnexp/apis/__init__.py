"""The library under the commands: every command parses its overrides, calls one of these, and prints.

    run = cnnexp.train("dataset=olivetti", "model=lenet", "trainer.epochs=5")
    predictor = cnnexp.open_run(run.folder, device="cpu")
    predictor.predict(["face.png", pil_image, array])
    predictor.evaluate("test", tencrop=True)
    study = cnnexp.sweep("optimizer.lr=0.1,0.05", "seeds=2", "trainer.epochs=5")

Errors are `cnnexp.errors` exceptions (one base class, CnnexpError)."""

from cnnexp.apis.inference import Predictor, open_run
from cnnexp.apis.runs import Run
from cnnexp.apis.sweeps import Sweep, sweep
from cnnexp.apis.training import train

__all__ = ["Predictor", "Run", "Sweep", "open_run", "sweep", "train"]
