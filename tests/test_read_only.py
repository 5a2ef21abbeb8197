"""Read-only commands (eval, predict, export, viz) run once compose their config once and make no Hydra
job folder: what they write is their own output, nothing else appears (no scratch folder, no outputs/);
a multirun of them is still Hydra's."""

import shutil
import tempfile
from pathlib import Path

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl

FIXTURE = Path(__file__).parent / "fixtures" / "run_main_387fe52"


@pytest.fixture
def old_run(tmp_path_factory):
    """A copy of an old train run (beside a face photo), outside the folder the commands run from."""
    from PIL import Image

    from cnnexp.data.sources.olivetti import embedded_gif, read_faces

    home = tmp_path_factory.mktemp("home")
    Image.fromarray(read_faces(embedded_gif())[3]).save(home / "face.png")
    return Path(shutil.copytree(FIXTURE, home / "run"))


@pytest.fixture
def compositions(monkeypatch):
    """How many times a config is composed (Hydra's compose API and hydra.main both load through here)."""
    count = [0]
    load = ConfigLoaderImpl.load_configuration

    def counted(self, *args, **kwargs):
        count[0] += 1
        return load(self, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counted)
    return count


def scratch_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("cnnexp-*")}


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("args, written", [
    (("eval", "run={run}", "split=test"), {"eval", "eval/test", "eval/test/eval.json"}),
    (("predict", "run={run}", "image={run}/../face.png", "topk=1"), set()),
    (("viz", "activations", "run={run}", "image=olivetti:3", "device=cpu"), {"viz", "viz/activations-olivetti-3-features.0.png"}),
    (("export", "run={run}"), {"export", "export/model.onnx", "export/model.json"}),
], ids=lambda v: v[0] if isinstance(v, tuple) else None)
def test_one_composition_and_no_job_folder(cnnexp, workdir, old_run, compositions, args, written):
    before_run, before_scratch = files_under(old_run), scratch_folders()
    result = cnnexp(*[a.format(run=old_run) for a in args])
    assert result.code == 0, result.err
    assert compositions[0] == 1
    new = files_under(old_run) - before_run
    assert written <= new and not any(".hydra" in n or n.endswith(".log") for n in new), sorted(new)
    assert {n.split("/")[0] for n in new} == {n.split("/")[0] for n in written}
    assert not any(workdir.iterdir()), "nothing where the command ran"
    assert scratch_folders() <= before_scratch


def test_a_failed_read_only_command_leaves_nothing(cnnexp, workdir, old_run):
    before = scratch_folders()
    result = cnnexp("eval", f"run={old_run}", "split=test", "dataset.limit=0")
    assert result.code == 2 and result.err.startswith("error: ")
    assert not (old_run / "eval").exists() and not any(workdir.iterdir())
    assert scratch_folders() <= before


def test_a_multirun_of_a_read_only_command_is_hydras(cnnexp, workdir, old_run):
    result = cnnexp("eval", "-m", f"run={old_run}", "split=val,test")
    assert result.code == 0, result.err
    assert (old_run / "eval" / "val" / "eval.json").is_file() and (old_run / "eval" / "test" / "eval.json").is_file()


@pytest.fixture
def inputs(tmp_path_factory):
    """Outside the folder the commands run from: two class folders of faces and a video of faces."""
    from PIL import Image
    from test_data_tools import face_video

    from cnnexp.data.sources.olivetti import embedded_gif, read_faces

    home = tmp_path_factory.mktemp("inputs")
    faces = read_faces(embedded_gif())
    for name, first in (("anna", 0), ("ben", 10)):
        (home / "photos" / name).mkdir(parents=True)
        for i in range(first, first + 10):
            Image.fromarray(faces[i]).save(home / "photos" / name / f"{i}.png")
    face_video(home / "faces.avi", frames=6)
    return home


@pytest.mark.parametrize("args, written", [
    (("data", "show", "out=grid.png", "device=cpu"), {"grid.png"}),
    (("data", "build-hdf5", "src={inputs}/photos", "out=faces.h5", "size=[32,32]", "workers=1"),
     {"faces.h5", "faces_mean.json"}),
    (("data", "build-shards", "src={inputs}/photos", "out=shards", "size=[32,32]", "workers=1"), {"shards"}),
    (("data", "from-video", "video={inputs}/faces.avi", "label=anna", "out=crops", "every=1"), {"crops"}),
    (("features", "run={run}", "out=features.h5", "device=cpu"), {"features.h5"}),
], ids=lambda v: " ".join(v[:2]) if isinstance(v, tuple) else None)
def test_data_tools_and_features_write_only_what_they_are_asked(cnnexp, workdir, old_run, inputs, compositions,
                                                                 args, written):
    """Run once from an empty folder, they compose once and leave their output alone: no outputs/, no
    .hydra, no log, no scratch folder."""
    before_scratch = scratch_folders()
    result = cnnexp(*[a.format(run=old_run, inputs=inputs) for a in args])
    assert result.code == 0, result.err
    assert compositions[0] == 1
    assert {p.name for p in workdir.iterdir()} == written
    assert not any(".hydra" in n or n.endswith(".log") for n in files_under(workdir))
    assert scratch_folders() <= before_scratch
