"""Qt widgets: each view is its own class and file; the main window only composes them."""
