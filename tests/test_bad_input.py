"""The bad-input corpus: every subcommand answers a wrong type, an out-of-range number, an unknown choice
or key, a missing or wrong file, a checkpoint of another model or a damaged image with one line starting
`error:`, exit code 2, no traceback, and no new folder or file left behind."""

import shutil
from pathlib import Path

import pytest
import torch

from cnnexp.cli import main

TINY = ("trainer.epochs=1", "dataset.limit=40", "trainer.batch_size=20", "device=cpu")
NO_DATA = ("dataset=folder", "dataset.root=/no/such/folder")  # a value checked after reading data would name it


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny Olivetti run, a checkpoint of another model, a damaged image, a text file, a photo folder."""
    root = tmp_path_factory.mktemp("bad_input")
    run = root / "run"
    assert main(["train", *TINY, f"hydra.run.dir={run}"]) == 0
    other = root / "other"
    assert main(["train", *TINY, "model=lenet5", f"hydra.run.dir={other}"]) == 0
    mixed = root / "mixed.pt"  # lenet5 weights under the lenet run's config
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    ckpt["model"] = torch.load(other / "checkpoints" / "best.pt", weights_only=True)["model"]
    torch.save(ckpt, mixed)
    truncated = root / "truncated.pt"
    truncated.write_bytes((run / "checkpoints" / "best.pt").read_bytes()[:5000])
    damaged = root / "damaged.png"
    damaged.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a picture" * 10)
    text = root / "notes.txt"
    text.write_text("hello")
    photos = root / "photos" / "cats"
    photos.mkdir(parents=True)
    shutil.copy(damaged, photos / "a.png")
    return {"run": run, "mixed": mixed, "truncated": truncated, "damaged": damaged, "text": text,
            "photos": root / "photos", "root": root}


CASES = [
    # train: types, ranges, choices, keys, files
    (("train", "model.nkerns=abc"), "model.nkerns=abc"),
    (("train", "model.hidden=-5", *TINY), "cannot build model 'lenet'"),
    (("train", "device.threads=true"), "device.threads=true"),
    (("train", "device.threads=0"), "device.threads=0 must be an integer >= 1"),
    (("train", "trainer.epochs=abc"), "trainer.epochs=abc"),
    (("train", "trainer.epochs=0"), "trainer.epochs=0 must be an integer >= 1"),
    (("train", "trainer.batch_size=-1"), "trainer.batch_size=-1 must be an integer >= 1"),
    (("train", "trainer.shuffle=maybe"), "trainer.shuffle=maybe"),
    (("train", "trainer.grad_clip=-1"), "trainer.grad_clip=-1"),
    (("train", "optimizer.lr=-0.1"), "optimizer.lr=-0.1 must be a number >= 0"),
    (("train", "optimizer.lr=fast"), "optimizer.lr"),
    (("train", "seed=-3"), "seed=-3 must be an integer >= 0"),
    (("train", "augmentation.rotation=lots"), "augmentation.rotation=lots"),
    (("train", "device.channels_last=maybe"), "device.channels_last=maybe"),
    (("train", "dataset=cifar"), "unknown dataset 'cifar'"),
    (("train", "model=resnet9000"), "unknown model 'resnet9000'"),
    (("train", "scheduler=linear"), "unknown scheduler 'linear'"),
    (("train", "scheduler=step", "scheduler.milestones=abc", *TINY), "scheduler.milestones='abc' must be a list"),
    (("train", "scheduler=staircase", "scheduler.gamma=half", *TINY), "scheduler.gamma='half' must be a number"),
    (("train", "experiment=nope"), "unknown experiment 'nope'"),
    (("train", "trainer.epoch=3"), "unknown key 'trainer.epoch'"),
    (("train", "model.widths=[8]"), "model.widths"),
    (("train", "model.nkerns=[20,50,60,70]", *TINY), "does not fit 57x47 inputs"),
    (("train", "trainer.batch_size=1000"), "does not fit the training split"),
    (("train", "dataset.root={text}"), "notes.txt"),
    (("train", "trainer.resume=/no/such/run"), "/no/such/run does not exist"),
    (("train", "trainer.resume={truncated}"), "truncated.pt"),
    (("train", "dataset=folder", "dataset.root=/no/such/folder"), "/no/such/folder"),
    (("train", "dataset=hdf5", "dataset.path={text}"), "notes.txt"),
    # checked by the schemas before any data is read (the data named here does not exist)
    (("train", *NO_DATA, "trainer.early_stopping=epoch"), "trainer.early_stopping=epoch is not one of: none, epochs"),
    (("train", *NO_DATA, "trainer.patience=0"), "trainer.patience=0 must be an integer >= 1"),
    (("train", *NO_DATA, "dataset.resize=sideways"), "dataset.resize=sideways is not one of: aspect, simple"),
    (("train", *NO_DATA, "dataset.max_pixels=0"), "dataset.max_pixels=0 must be a positive number of pixels"),
    (("train", *NO_DATA, "dataset.split=[0.5,0.5]"), "dataset.split=[0.5, 0.5] must be three fractions"),
    (("train", *NO_DATA, "dataset.channels=2"), "dataset.channels=2 must be 1 (grey) or 3 (RGB)"),
    (("train", *NO_DATA, "dataset.in_memory=sometimes"), "dataset.in_memory=sometimes is not one of"),
    (("train", *NO_DATA, "dataset.normalize=unit"), "dataset.normalize=unit is not one of"),
    (("train", "dataset=hdf5", "dataset.path=/no/such.h5", "dataset.mean=median"), "dataset.mean=median is not one of"),
    (("train", "dataset=mnist", "dataset.root=/no/such/folder", "dataset.val_size=-1"), "dataset.val_size=-1 must be"),
    (("train", "dataset.root=/no/such.gif", "dataset.per_person=[8,1]"), "dataset.per_person=[8, 1] must be three"),
    (("train", "dataset.root=/no/such.gif", "optimizer=momentum", "optimizer.momentum=-0.5"),
     "optimizer.momentum=-0.5 must be a number >= 0"),
    (("train", "dataset.root=/no/such.gif", "optimizer=adam", "optimizer.betas=[0.9,2]"), "optimizer.betas=[0.9, 2]"),
    (("train", "dataset.root=/no/such.gif", "optimizer.decay_norm_bias=1"), "optimizer.decay_norm_bias=1 must be true"),
    # a key the chosen optimizer or scheduler class does not take, named before any data is read
    (("train", *NO_DATA, "+optimizer.momentum=0.9"),
     "optimizer.momentum: torch.optim.Adam takes no argument 'momentum'; use optimizer=momentum or optimizer=sgd"),
    (("train", *NO_DATA, "+optimizer.betaz=[0.9,0.9]"), "optimizer.betaz: torch.optim.Adam takes no argument 'betaz'; "
     "did you mean optimizer.betas?"),
    (("train", *NO_DATA, "scheduler=none", "+scheduler.step_size=3"),
     "scheduler.step_size: scheduler=none takes no argument 'step_size'; use scheduler=staircase"),
    (("train", *NO_DATA, "optimizer._target_=torch.optim.Adamm"), "optimizer._target_=torch.optim.Adamm is not a class"),
    (("sweep", *NO_DATA, "optimizer=sgd", "+optimizer.betas=[0.9,0.9]"), "use optimizer=adam, or one of SGD's keys"),
    (("train", "dataset.root=/no/such.gif", "augmentation.fill=wrap"), "augmentation.fill=wrap is not one of"),
    (("train", "dataset.root=/no/such.gif", "augmentation.zoom=1.5"), "augmentation.zoom=1.5 must be a number in"),
    (("train", "dataset.root=/no/such.gif", "model.preprocess=imagenet"), "model.preprocess=imagenet is not one of"),
    # eval
    (("eval", "run=/no/such/run"), "/no/such/run"),
    (("eval", "run={run}", "split=holdout"), "holdout"),
    (("eval", "run={run}", "which=middle"), "middle"),
    (("eval", "run={run}", "--tencrop"), "ten-crop needs a run trained on crops"),
    (("eval", "run={run}", "checkpoint={mixed}"), "mixed.pt"),
    (("eval", "run={run}", "checkpoint={truncated}"), "truncated.pt"),
    (("eval", "run={run}", "eval.max_images=many"), "eval.max_images=many"),
    (("eval", "run={run}", "nope=1"), "unknown key 'nope'"),
    (("eval", "run={run}", "dataset.limt=1"), "unknown key 'dataset.limt'; did you mean dataset.limit?"),
    (("eval", "run={run}", "+trainer.batch_sise=1"), "+trainer.batch_sise=1 adds a key that no part of cnnexp reads"),
    (("eval", "run={run}", "+dataset.per_persn=[8,1,1]"),
     "dataset.per_persn: the run's dataset (olivetti) has no key 'per_persn'; did you mean dataset.per_person?"),
    (("eval", "run={run}", "+dataset.per_person=[8,1]"), "dataset.per_person=[8, 1] must be three counts"),
    (("eval", "run={run}", "by=race"), "by=race: this dataset has no fields to break the results down by"),
    (("eval", "run={run}", "by=[race,gender]"), "by=[race,gender]"),
    # predict
    (("predict", "run={run}", "image={damaged}"), "damaged.png"),
    (("predict", "run={run}", "image=/no/such.png"), "/no/such.png"),
    (("predict", "run={run}", "image={damaged}", "topk=0"), "topk"),
    (("predict", "run={run}", "image={damaged}", "topk=two"), "topk=two"),
    (("predict", "run={run}", "checkpoint={mixed}", "image=olivetti"), "mixed.pt"),
    (("predict", "image=olivetti"), "run"),
    # sweep
    (("sweep", "seeds=0"), "seeds=0 must be an integer >= 1"),
    (("sweep", "seeds=many"), "seeds=many"),
    (("sweep", "sweep=nope"), "unknown sweep 'nope'"),
    (("sweep", "optimizer.lr=0.1,fast"), "optimizer.lr"),
    (("sweep", "sweep.metric=accuracy"), "is not a run metric"),
    (("sweep", "sweep.dir={text}"), "is a file"),
    (("sweep", "summarize", "dir=/no/such/sweep"), "/no/such/sweep is not a folder"),
    # data tools
    (("data", "build-hdf5", "src=/no/such/folder", "out=x.h5"), "/no/such/folder"),
    (("data", "build-hdf5", "src={photos}", "out=x.h5", "size=big"), "size"),
    (("data", "build-hdf5", "src={photos}", "out=x.h5", "channels=2"), "channels"),
    (("data", "build-hdf5", "src={photos}", "out=x.h5", "strict=true"), "a.png"),
    (("data", "build-hdf5", "src={photos}", "out=x.h5", "buffer=0"), "buffer=0"),
    (("data", "build-hdf5", "src={photos}", "out=x.h5", "colour=1"), "unknown key 'colour'"),
    (("data", "build-hdf5", "src=/no/such/folder", "out=x.h5", "compression=zip"), "compression=zip is not one of"),
    (("data", "build-hdf5", "src=/no/such/folder", "out=x.h5", "max_pixels=0"), "max_pixels=0 must be a positive"),
    (("data", "build-hdf5", "src=/no/such/folder", "out=x.h5", "resize=sideways"), "resize=sideways is not one of"),
    (("data", "build-hdf5", "src=/no/such/folder", "out=x.h5", "split=[1,-1,0]"), "split=[1.0, -1.0, 0.0] must be"),
    (("data", "from-video", "video={text}", "label=x"), "notes.txt"),
    (("data", "from-video", "video=/no/such.avi", "label=x"), "/no/such.avi"),
    (("data", "from-video", "video={text}", "label=x", "every=often"), "every=often"),
    (("data", "show", "dataset=cifar"), "unknown dataset 'cifar'"),
    (("data", "show", "samples=lots"), "samples=lots"),
    (("data", "frobnicate"), "unknown data tool 'frobnicate'"),
    (("frobnicate",), "unknown command 'frobnicate'"),
]


def snapshot(*roots: Path) -> set[str]:
    return {str(p) for root in roots if root.exists() for p in root.rglob("*")}


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_error_line_exit_2_and_leaves_nothing(files, workdir, capsys, args, message):
    args = [a.format(**files) for a in args]
    before = snapshot(workdir, files["root"])
    code = main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message.format(**files) in lines[0], err
    assert "Traceback" not in err
    assert snapshot(workdir, files["root"]) == before


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 40
    assert {args[0] for args, _ in CASES} >= {"train", "eval", "predict", "sweep", "data"}
