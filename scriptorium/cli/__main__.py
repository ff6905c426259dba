"""``python -m scriptorium.cli``: how the containers and the tests start every process."""

from scriptorium.cli import main

main()
