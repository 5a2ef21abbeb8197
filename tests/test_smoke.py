from conftest import read_json


def test_two_runs_in_process(cnnexp, workdir):
    for _ in range(2):
        result = cnnexp("train", "trainer.epochs=1", "dataset.limit=40", "trainer.batch_size=20")
        assert result.code == 0, result.err
    runs = sorted((workdir / "outputs" / "train").iterdir())
    assert len(runs) == 2
    assert read_json(runs[0] / "metrics.json")["epochs_run"] == 1
