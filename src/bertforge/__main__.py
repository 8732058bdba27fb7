"""`python -m bertforge` (and `torchrun -m bertforge ...`) runs the command line."""

from bertforge.cli import main

main()
