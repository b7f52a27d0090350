"""The air-gapped bundle: built on a connected machine, installed offline by install.sh."""
