"""Early-stopping rules, each a small object the trainer asks after every evaluation and step."""

from cnnexp.utils.errors import UserError


class NoStopping:
    def update(self, improved: bool, val_error: float, best_before: float, step: int, epoch: int) -> None:
        pass

    def should_stop(self, step: int, epoch: int) -> bool:
        return False

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(state)


class EpochPatience(NoStopping):
    """Stop after `patience` epochs without a new best validation error."""

    def __init__(self, patience: int):
        self.patience = int(patience)
        self.best_epoch = 0

    def update(self, improved, val_error, best_before, step, epoch):
        if improved:
            self.best_epoch = epoch

    def should_stop(self, step, epoch):
        return epoch - self.best_epoch >= self.patience


class TutorialPatience(NoStopping):
    """deeplearning.net's rule: look at least `patience` iterations; a validation error below
    `improvement_threshold` x the best extends patience to `step x patience_increase`."""

    def __init__(self, patience: int, patience_increase: float, improvement_threshold: float):
        self.patience = int(patience)
        self.patience_increase = float(patience_increase)
        self.improvement_threshold = float(improvement_threshold)

    def update(self, improved, val_error, best_before, step, epoch):
        if improved and val_error < best_before * self.improvement_threshold:
            self.patience = max(self.patience, int(step * self.patience_increase))

    def should_stop(self, step, epoch):
        return self.patience <= step


def make_early_stopping(trainer_cfg):
    rule = trainer_cfg.early_stopping
    if rule in (None, "none"):
        return NoStopping()
    if rule == "epochs":
        return EpochPatience(trainer_cfg.patience)
    if rule == "tutorial":
        return TutorialPatience(
            trainer_cfg.patience_iterations, trainer_cfg.patience_increase, trainer_cfg.improvement_threshold
        )
    raise UserError(f"trainer.early_stopping={rule} is not one of: none, epochs, tutorial")
