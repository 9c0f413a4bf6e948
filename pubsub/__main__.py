"""``python -m pubsub`` runs the command line."""

from pubsub.commands.app import main

main()
