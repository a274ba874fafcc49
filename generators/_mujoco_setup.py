"""Process-wide MuJoCo settings for headless, long-running simulation; imported first.

- `MUJOCO_GL=disable` unless set: nothing here renders, and probing GLFW warns on machines
  without a display.
- MuJoCo warnings go to logging (DEBUG, logger `generators.mujoco`) unless a handler is
  already installed: the stability guard detects and counts them, while MuJoCo's default
  prints each one to stderr and appends it to ./MUJOCO_LOG.TXT, flooding the console and
  working directory of a run that explores unstable physics.
"""

import logging
import os

os.environ.setdefault("MUJOCO_GL", "disable")

import mujoco  # after MUJOCO_GL is set

_LOG = logging.getLogger("generators.mujoco")


def _route_warning(message: str) -> None:
    _LOG.debug("%s", message)


def route_mujoco_warnings(force: bool = False) -> None:
    """Send MuJoCo's warnings to the `generators.mujoco` logger.

    Without `force`, a handler someone else installed is kept. With it, ours replaces theirs:
    importing RLlib imports dm_control (when installed), which installs a handler that logs
    every warning at WARNING level, so the learner calls this with `force=True` afterwards.
    """
    if force or mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_route_warning)


route_mujoco_warnings()
