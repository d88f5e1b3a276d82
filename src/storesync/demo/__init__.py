"""The demo: a whole running system (`harness.running_system`) and the story `storesync demo` plays on it."""

from storesync.demo.story import run_demo

__all__ = ["run_demo"]
