"""Early-stopping rules, each a small object the trainer asks after every evaluation and step."""


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
        self.patience = patience
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
        self.patience = patience
        self.patience_increase = patience_increase
        self.improvement_threshold = improvement_threshold

    def update(self, improved, val_error, best_before, step, epoch):
        if improved and val_error < best_before * self.improvement_threshold:
            self.patience = max(self.patience, int(step * self.patience_increase))

    def should_stop(self, step, epoch):
        return self.patience <= step


def make_early_stopping(trainer_cfg):
    """The rule `trainer.early_stopping` names (its schema has checked the name)."""
    rules = {"none": NoStopping,
             "epochs": lambda: EpochPatience(trainer_cfg.patience),
             "tutorial": lambda: TutorialPatience(trainer_cfg.patience_iterations, trainer_cfg.patience_increase,
                                                  trainer_cfg.improvement_threshold)}
    return rules[trainer_cfg.early_stopping]()
