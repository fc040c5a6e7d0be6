"""``baton web``: the ops console and the worker app, served by aiohttp as plain HTML and JavaScript."""
