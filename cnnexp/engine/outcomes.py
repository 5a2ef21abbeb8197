"""How a training run that something stopped ends: its metrics.json written where it stopped on its own
(diverged, interrupted, pruned by a search), and every failure told in one line that says what is kept
and how to resume."""

import errno
from contextlib import contextmanager

from cnnexp.utils.errors import Diverged, Interrupted, PeerLost, Pruned, UserError


@contextmanager
def failures_explained(trainer):
    """Around a trainer's loop (engine.trainer.Trainer.fit)."""
    try:
        yield
    except PeerLost as exc:
        raise PeerLost(f"{exc}; the run stops: {trainer.kept()}") from exc
    except Diverged:
        trainer.finish(diverged=True)
        raise
    except Interrupted:
        trainer.finish(diverged=False, interrupted=True)
        raise
    except Pruned:
        trainer.finish(diverged=False, pruned=True)
        raise
    except UserError as exc:  # a data file damaged since the start, a full disk: say what is kept
        raise UserError(f"{exc}; {trainer.kept()}") from exc
    except RuntimeError as exc:  # inside DDP's backward: a rank died or timed out
        if not trainer.group.is_peer_failure(exc):
            raise
        raise PeerLost(f"{trainer.group.lost(exc)}; the run stops: {trainer.kept()}") from exc
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UserError(f"no space left for the run folder {trainer.run_dir} ({exc.strerror}); {trainer.kept()}")
