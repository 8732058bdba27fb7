"""`python -m bertforge` (and `torchrun -m bertforge ...`) runs the command line."""

from bertforge.cli import main

if __name__ == "__main__":  # spawned worker processes import this module too: do not re-run there
    main()
