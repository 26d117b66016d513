"""PyInstaller entry point of the window (see installer/iadgpt-desktop.spec)."""

import sys

from iadgpt_desktop.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
