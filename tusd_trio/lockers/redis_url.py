"""Where the Redis locker's Redis is: its URL, parsed (standard library only, so
that the URL can be checked without the Redis client installed).

URLs (see :func:`parse_redis_url`)::

    redis://[[user]:password@]host[:6379][/db]          plain TCP
    rediss://...                                          TLS
    unix://[[user]:password@]/path/to/redis.sock[?db=0]  Unix socket
    redis+sentinel://[[user]:password@]host[:26379][,host2[:port]...]/service[/db]
    redis+cluster://[[user]:password@]host[:6379][,host2[:port]...]
    rediss+sentinel://... and rediss+cluster://...        TLS
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class RedisTarget:
    """Where the locker's Redis is, parsed from a URL."""

    kind: Literal["standalone", "sentinel", "cluster"]
    #: ``(host, port)`` of the server, the sentinels or the cluster's seed nodes
    #: (empty for a Unix socket).
    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    #: Sentinel only: the monitored primary's name.
    service_name: str | None = None
    #: Sentinel only: credentials for the sentinels themselves (query string
    #: ``sentinel_username`` / ``sentinel_password``).
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    #: Standalone only: the URL as coredis takes it.
    url: str = field(default="", repr=False)

    def describe(self) -> str:
        """The target without secrets, for logs."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts) or "unix socket"
        scheme = {"standalone": "redis", "sentinel": "redis+sentinel", "cluster": "redis+cluster"}
        suffix = f"/{self.service_name}/{self.db}" if self.kind == "sentinel" else f"/{self.db}"
        return f"{scheme[self.kind]}{'(tls)' if self.tls else ''}://{hosts}{suffix}"


def _split_hosts(hostlist: str, default_port: int, url: str) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise ValueError(f"invalid Redis URL {url!r}: empty host name")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError(f"invalid Redis URL {url!r}: bad port {port_text!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"invalid Redis URL {url!r}: bad port {port}")
        hosts.append((unquote(host), port))
    if not hosts:
        raise ValueError(f"invalid Redis URL {url!r}: no host")
    return tuple(hosts)


def _parse_db(text: str, url: str) -> int:
    try:
        db = int(text)
    except ValueError:
        raise ValueError(f"invalid Redis URL {url!r}: bad database number {text!r}") from None
    if db < 0:
        raise ValueError(f"invalid Redis URL {url!r}: bad database number {text!r}")
    return db


def parse_redis_url(url: str) -> RedisTarget:
    """Parse a locker URL.

    ``redis://``, ``rediss://`` and ``unix://`` are standard (as coredis and
    redis-py read them; the path or ``?db=`` is the database number).
    ``redis+sentinel://`` lists sentinels (default port 26379) and names the
    primary as the first path segment, the database as an optional second one.
    ``redis+cluster://`` lists seed nodes (default port 6379); a cluster has
    database 0 only.  Credentials in the URL authenticate against the data
    nodes; ``?sentinel_password=`` (and ``sentinel_username``) against sentinels.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = {k: v[-1] for k, v in parse_qs(parts.query).items() if v}
    netloc = parts.netloc
    userinfo, at, hostlist = netloc.rpartition("@")
    if not at:
        userinfo, hostlist = "", netloc
    username: str | None = None
    password: str | None = None
    if userinfo:
        user_text, colon, password_text = userinfo.partition(":")
        username = unquote(user_text) or None
        password = unquote(password_text) if colon else None
        if not colon:  # redis://secret@host is a password, as in redis-cli
            username, password = None, unquote(user_text)
    if scheme in ("redis", "rediss"):
        hosts = _split_hosts(hostlist, 6379, url)
        if len(hosts) != 1:
            raise ValueError(
                f"invalid Redis URL {url!r}: several hosts need redis+sentinel:// or redis+cluster://"
            )
        path = parts.path.strip("/")
        db = _parse_db(query.get("db", path or "0"), url)
        return RedisTarget("standalone", hosts, db, username, password, scheme == "rediss", url=url)
    if scheme == "unix":
        if not parts.path:
            raise ValueError(f"invalid Redis URL {url!r}: no socket path")
        db = _parse_db(query.get("db", "0"), url)
        return RedisTarget("standalone", (), db, username, password, url=url)
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        hosts = _split_hosts(hostlist, 26379, url)
        segments = [s for s in parts.path.split("/") if s]
        if not segments or len(segments) > 2:
            raise ValueError(
                f"invalid Redis URL {url!r}: expected /<service name>[/<db>] after the sentinels"
            )
        db = _parse_db(query.get("db", segments[1] if len(segments) == 2 else "0"), url)
        return RedisTarget(
            "sentinel",
            hosts,
            db,
            username,
            password,
            scheme.startswith("rediss"),
            service_name=unquote(segments[0]),
            sentinel_username=query.get("sentinel_username"),
            sentinel_password=query.get("sentinel_password"),
        )
    if scheme in ("redis+cluster", "rediss+cluster"):
        hosts = _split_hosts(hostlist, 6379, url)
        path = parts.path.strip("/")
        if path not in ("", "0"):
            raise ValueError(f"invalid Redis URL {url!r}: a Redis Cluster only has database 0")
        return RedisTarget("cluster", hosts, 0, username, password, scheme.startswith("rediss"))
    raise ValueError(
        f"invalid Redis URL {url!r}: the scheme must be redis, rediss, unix, "
        "redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster"
    )
