"""`python -m lingcoder` (also what `torchrun -m lingcoder` runs)."""

from lingcoder.cli import main

if __name__ == "__main__":
    main()
