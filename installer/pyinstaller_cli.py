"""PyInstaller entry point of the `iadgpt` command line (see installer/iadgpt-desktop.spec)."""

import sys

from iadgpt_desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
