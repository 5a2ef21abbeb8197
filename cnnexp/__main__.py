from cnnexp.cli import entry

entry()
