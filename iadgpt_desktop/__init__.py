"""IAD-GPT Desktop: the Qt application."""

import iadgpt  # noqa: F401 - before anything imports torch: it sets the OpenMP wait policy
