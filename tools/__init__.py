"""Visual tools: pure functions over workspace images, offered to policies through a registry."""
