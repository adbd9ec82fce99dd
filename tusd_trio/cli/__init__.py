"""The ``tusd-trio`` command line, with tusd's flag names and syntax.

- :mod:`.flags`: the flag table, parsing a command line, ``-help``;
- :mod:`.build`: the parsed flags (and the environment tusd reads) as a
  :class:`~tusd_trio.config.Config`;
- :mod:`.main`: the entry point (``tusd-trio``, ``python -m tusd_trio``): subcommands,
  worker processes; it loads no server code unless this process serves;
- :mod:`.serve`: running the server until a signal.
"""
