#!/usr/bin/env python3
"""`python run.py ...` in a checkout: the same as the installed `facestream` command
(streamer/cli.py), for running without installing."""

import sys

from streamer.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="run.py"))
