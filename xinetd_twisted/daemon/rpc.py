# -*- test-case-name: tests.test_daemon_rpc -*-
"""
The rpcbind registrations of C{type = RPC} services: every version of
C{rpc_version} on the service's protocol and bound port, set when its
socket is bound (again after a cps pause, when the port may be new),
changed when a reload changes them, unset when the service stops or a
reload removes it.

As xinetd: a listed service takes its program number from /etc/rpc, a
registration that fails is logged (C{pmap_set failed}) and the service
goes on serving.  Unlike xinetd, nothing blocks: the calls go out together
and their answers are logged as they come (xinetd sleeps a second per
version, stalling every service).

PMAP UNSET removes a program version on every protocol: when a tcp and a
udp service share a program, unsetting one re-sets the other's mapping.
"""

from __future__ import annotations

import socket
from typing import Any, Dict, Optional, Tuple

import attr
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.protocols.portmap import PROTOCOL_NUMBERS, PortmapClient
from xinetd_twisted.records import plainRepr


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class Registration:
    """
    One rpcbind mapping: program, version, protocol number, port.
    """

    program: int
    version: int
    protocol: int
    port: int


def registrationsFor(service: ServiceConfig, port: int) -> Tuple[Registration, ...]:
    """
    The mappings an RPC service bound on C{port} asks for (none for a
    service that is not RPC or has no program number or version).
    """
    if "RPC" not in service.types:
        return ()
    if service.rpcNumber is None or service.rpcVersion is None:
        return ()
    protocol = PROTOCOL_NUMBERS.get(service.protocol)
    if protocol is None:
        return ()
    low, high = service.rpcVersion
    return tuple(
        Registration(service.rpcNumber, version, protocol, port)
        for version in range(low, high + 1)
    )


def boundPort(sock: Optional[socket.socket]) -> Optional[int]:
    """
    The port C{sock} is bound to (the one the kernel chose for port 0).
    """
    if sock is None:
        return None
    try:
        return int(sock.getsockname()[1])
    except (OSError, IndexError, TypeError):
        return None


class RpcRegistrations:
    """
    What this daemon has registered with rpcbind, by service id.
    """

    log = Logger(namespace="xinetd_twisted.rpc")

    def __init__(self, client: PortmapClient) -> None:
        self._client = client
        self._registered: Dict[str, Tuple[Registration, ...]] = {}

    def registered(self, serviceId: str) -> Tuple[Registration, ...]:
        """
        The mappings set for C{serviceId} (those rpcbind accepted or not).
        """
        return self._registered.get(serviceId.lower(), ())

    def runtimeBound(self, runtime: Any) -> Deferred:
        """
        A runtime's socket was bound (or bound again): register it, or move
        its mappings to its new port or versions.
        """
        service = runtime.service
        if "RPC" not in service.types:
            return succeed(None)
        port = boundPort(runtime.listeningSocket())
        if port is None:
            return succeed(None)
        return self.sync(service.serviceId, registrationsFor(service, port))

    def runtimeUpdated(self, runtime: Any) -> Deferred:
        """
        A reload kept a runtime with a new configuration: its versions or
        program may have changed (its port has not).
        """
        key = runtime.serviceId.lower()
        current = self._registered.get(key)
        service = runtime.service
        if current is None and "RPC" not in service.types:
            return succeed(None)
        if not current:
            return self.runtimeBound(runtime)
        return self.sync(runtime.serviceId, registrationsFor(service, current[0].port))

    def sync(self, serviceId: str, wanted: Tuple[Registration, ...]) -> Deferred:
        """
        Make C{serviceId}'s mappings C{wanted}: unset the old ones, set the
        new ones.
        """
        key = serviceId.lower()
        current = self._registered.get(key, ())
        if current == wanted:
            return succeed(None)
        # In order: a SET of a version still mapped would be refused.
        d = self._unset(key, current) if current else succeed(None)
        if wanted:
            self._registered[key] = wanted
            d.addCallback(lambda _: self._set(serviceId, wanted))
        return d.addCallback(lambda _: None)

    def remove(self, serviceId: str) -> Deferred:
        """
        The service stopped or was removed: unset its mappings.
        """
        return self.sync(serviceId, ())

    def stop(self) -> Deferred:
        """
        The daemon stops: unset everything, then close the client.
        """
        calls = [self.remove(serviceId) for serviceId in list(self._registered)]
        return DeferredList(calls).addCallback(lambda _: self._client.close())

    def _set(self, serviceId: str, wanted: Tuple[Registration, ...]) -> Deferred:
        def answered(results: Any) -> None:
            count = 0
            for (ok, answer), registration in zip(results, wanted, strict=True):
                if ok and answer:
                    count += 1
                else:
                    self.log.error(
                        "pmap_set failed. service={service} program={program} "
                        "version={version}",
                        service=serviceId,
                        program=registration.program,
                        version=registration.version,
                    )
            self.log.info(
                "Registered {count} versions of {service} (port {port})",
                count=count,
                service=serviceId,
                port=wanted[0].port,
            )

        calls = [
            self._client.set(r.program, r.version, r.protocol, r.port) for r in wanted
        ]
        return DeferredList(calls).addCallback(answered)

    def _unset(self, key: str, current: Tuple[Registration, ...]) -> Deferred:
        self._registered.pop(key, None)
        versions = sorted({(r.program, r.version) for r in current})
        # UNSET clears every protocol: keep the other services' mappings.
        others = [
            r
            for otherKey, registrations in self._registered.items()
            if otherKey != key
            for r in registrations
            if (r.program, r.version) in versions
        ]
        calls = [self._client.unset(program, version) for program, version in versions]
        d = DeferredList(calls)
        if others:
            d.addCallback(
                lambda _: DeferredList(
                    [
                        self._client.set(r.program, r.version, r.protocol, r.port)
                        for r in others
                    ]
                )
            )
        return d.addCallback(lambda _: None)
