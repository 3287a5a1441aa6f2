from .config import FAIL_REASON
from .dns_resolver import globalDnsResolver
from .monotonic import monotonic as monotonicTime
from .node import Node, TCPNode
from .tcp_connection import TcpConnection, CONNECTION_STATE, HandshakeFrame
from .tcp_server import TcpServer
from . import wire
import collections
import functools
import logging
import os
import threading
import time
import random

logger = logging.getLogger(__name__)

#: a refused peer is logged at most once per this many seconds
REFUSAL_LOG_INTERVAL = 60.0


class TransportNotReadyError(Exception):
    """Transport failed to get ready for operation."""


class Transport(object):
    """Base class for implementing a transport between PySyncObj nodes"""

    def __init__(self, syncObj, selfNode, otherNodes):
        """
        Initialise the transport

        :param syncObj: SyncObj
        :type syncObj: SyncObj
        :param selfNode: current server node, or None if this is a read-only node
        :type selfNode: Node or None
        :param otherNodes: partner nodes
        :type otherNodes: list of Node
        """

        self._onMessageReceivedCallback = None
        self._onNodeConnectedCallback = None
        self._onNodeDisconnectedCallback = None
        self._onReadonlyNodeConnectedCallback = None
        self._onReadonlyNodeDisconnectedCallback = None
        self._onUtilityMessageCallbacks = {}

    def setOnMessageReceivedCallback(self, callback):
        """
        Set the callback for when a message is received, or disable callback by passing None

        :param callback callback
        :type callback function(node: Node, message: any) or None
        """

        self._onMessageReceivedCallback = callback

    def setOnNodeConnectedCallback(self, callback):
        """
        Set the callback for when the connection to a (non-read-only) node is established, or disable callback by passing None

        :param callback callback
        :type callback function(node: Node) or None
        """

        self._onNodeConnectedCallback = callback

    def setOnNodeDisconnectedCallback(self, callback):
        """
        Set the callback for when the connection to a (non-read-only) node is terminated or is considered dead, or disable callback by passing None

        :param callback callback
        :type callback function(node: Node) or None
        """

        self._onNodeDisconnectedCallback = callback

    def setOnReadonlyNodeConnectedCallback(self, callback):
        """
        Set the callback for when a read-only node connects, or disable callback by passing None

        :param callback callback
        :type callback function(node: Node) or None
        """

        self._onReadonlyNodeConnectedCallback = callback

    def setOnReadonlyNodeDisconnectedCallback(self, callback):
        """
        Set the callback for when a read-only node disconnects (or the connection is lost), or disable callback by passing None

        :param callback callback
        :type callback function(node: Node) or None
        """

        self._onReadonlyNodeDisconnectedCallback = callback

    def setOnUtilityMessageCallback(self, message, callback):
        """
        Set the callback for when an utility message is received, or disable callback by passing None

        :param message: the utility message string (add, remove, set_version, and so on)
        :type message: str
        :param callback: callback
        :type callback: function(message: list, callback: function) or None
        """

        if callback:
            self._onUtilityMessageCallbacks[message] = callback
        elif message in self._onUtilityMessageCallbacks:
            del self._onUtilityMessageCallbacks[message]

    # Helper functions so you don't need to check for the callbacks manually in subclasses
    def _onMessageReceived(self, node, message):
        if self._onMessageReceivedCallback is not None:
            self._onMessageReceivedCallback(node, message)

    def _onNodeConnected(self, node):
        if self._onNodeConnectedCallback is not None:
            self._onNodeConnectedCallback(node)

    def _onNodeDisconnected(self, node):
        if self._onNodeDisconnectedCallback is not None:
            self._onNodeDisconnectedCallback(node)

    def _onReadonlyNodeConnected(self, node):
        if self._onReadonlyNodeConnectedCallback is not None:
            self._onReadonlyNodeConnectedCallback(node)

    def _onReadonlyNodeDisconnected(self, node):
        if self._onReadonlyNodeDisconnectedCallback is not None:
            self._onReadonlyNodeDisconnectedCallback(node)

    def tryGetReady(self):
        """
        Try to get the transport ready for operation. This may for example mean binding a server to a port.

        :raises TransportNotReadyError: if the transport fails to get ready for operation
        """

    @property
    def ready(self):
        """
        Whether the transport is ready for operation.

        :rtype bool
        """

        return True

    def waitReady(self):
        """
        Wait for the transport to be ready.

        :raises TransportNotReadyError: if the transport fails to get ready for operation
        """

    def addNode(self, node):
        """
        Add a node to the network

        :param node node to add
        :type node Node
        """

    def dropNode(self, node):
        """
        Remove a node from the network (meaning connections, buffers, etc. related to this node can be dropped)

        :param node node to drop
        :type node Node
        """

    def send(self, node, message):
        """
        Send a message to a node.
        The message should be picklable.
        The return value signifies whether the message is thought to have been sent successfully. It does not necessarily mean that the message actually arrived at the node.

        :param node target node
        :type node Node
        :param message message
        :type message any
        :returns success
        :rtype bool
        """

        raise NotImplementedError

    def destroy(self):
        """
        Destroy the transport
        """


class TCPTransport(Transport):
    """TCP between replicas with haco's wire (wire.py): a handshake that authenticates both ends
    by node id, then sealed msgpack frames. Fork: no utility commands, no read-only nodes, no
    pickle; refused frames are counted (wireStats) and logged once per peer per minute."""

    def __init__(self, syncObj, selfNode, otherNodes):
        super(TCPTransport, self).__init__(syncObj, selfNode, otherNodes)
        conf = syncObj.conf
        self._syncObj = syncObj
        self._server = None
        self._connections = {} # Node object -> TcpConnection object
        self._unknownConnections = set() # set of TcpConnection objects
        self._selfNode = selfNode
        self._selfIsReadonlyNode = selfNode is None
        if self._selfIsReadonlyNode:
            raise ValueError('the fork has no read-only nodes')
        self._nodes = set() # set of TCPNode
        self._readonlyNodes = set()
        self._nodeAddrToNode = {} # node address -> TCPNode
        self._nodeIdToNode = {} # wire id -> TCPNode
        self._nodeIds = dict(conf.nodeIds or {})
        self._selfId = conf.nodeId or selfNode.address
        self._key = wire.cluster_key(conf.password)
        self._lastConnectAttempt = {} # TPCNode -> float (seconds since epoch)
        self._preventConnectNodes = set() # set of TCPNode to which no (re)connection should be triggered on _connectIfNecessary; used via dropNode and destroy to cleanly remove a node
        self._lastBindAttemptTime = 0
        self._bindAttempts = 0
        self._bindOverEvent = threading.Event() # gets triggered either when the server has either been bound correctly or when the number of bind attempts exceeds the config value maxBindRetries
        self._ready = False
        self._send_random_sleep_duration = 0
        self.refused = collections.Counter()  #: reason -> frames or connections refused
        self._refusalLogged = {}  #: peer -> when it was last logged

        self._syncObj.addOnTickCallback(self._onTick)

        for node in otherNodes:
            self.addNode(node)

        self._createServer()

    def wireId(self, node):
        return self._nodeIds.get(node.address, node.address)

    def setWireId(self, address, nodeId):
        """haco: the id a member added at run time has on the wire (before addNode)."""
        self._nodeIds[address] = nodeId

    def wireStats(self):
        return {'refused': dict(self.refused), 'refused_total': sum(self.refused.values())}

    def _connToNode(self, conn):
        for node in self._connections:
            if self._connections[node] is conn:
                return node
        return None

    def tryGetReady(self):
        self._maybeBind()

    @property
    def ready(self):
        return self._ready

    def _newConnection(self, **kwargs):
        conf = self._syncObj.conf
        return TcpConnection(poller=self._syncObj._poller, timeout=conf.connectionTimeout,
                             sendBufferSize=conf.sendBufferSize, recvBufferSize=conf.recvBufferSize,
                             keepalive=conf.tcp_keepalive, handshakeBytesMax=conf.handshakeBytesMax,
                             frameBytesMax=conf.frameBytesMax, onRefused=self._onRefused, **kwargs)

    def _createServer(self):
        conf = self._syncObj.conf
        bindAddr = conf.bindAddress
        seflAddr = getattr(self._selfNode, 'address')
        if bindAddr is not None:
            host, port = bindAddr.rsplit(':', 1)
        elif seflAddr is not None:
            host, port = seflAddr.rsplit(':', 1)
            if ':' in host:
                host = '::'
            else:
                host = '0.0.0.0'
        else:
            raise RuntimeError('Unable to determine bind address')

        if host != '0.0.0.0':
            host = globalDnsResolver().resolve(host)
        self._server = TcpServer(self._syncObj._poller, host, port, onNewConnection = self._onNewIncomingConnection,
                                 sendBufferSize = conf.sendBufferSize,
                                 recvBufferSize = conf.recvBufferSize,
                                 connectionTimeout = conf.connectionTimeout,
                                 handshakeBytesMax = conf.handshakeBytesMax,
                                 frameBytesMax = conf.frameBytesMax)

    def _maybeBind(self):
        if self._ready or monotonicTime() < self._lastBindAttemptTime + self._syncObj.conf.bindRetryTime:
            return
        self._lastBindAttemptTime = monotonicTime()
        try:
            self._server.bind()
        except Exception as e:
            self._bindAttempts += 1
            if self._syncObj.conf.maxBindRetries and self._bindAttempts >= self._syncObj.conf.maxBindRetries:
                self._bindOverEvent.set()
                raise TransportNotReadyError
        else:
            self._ready = True
            self._bindOverEvent.set()

    def _onTick(self):
        try:
            self._maybeBind()
        except TransportNotReadyError:
            pass
        self._connectIfNecessary()
        self._closeSlowHandshakes()

    def _closeSlowHandshakes(self):
        """A connection that has not authenticated within handshakeTimeout is closed (also one that
        sends nothing at all: the poller would never wake it)."""
        limit = monotonicTime() - self._syncObj.conf.handshakeTimeout
        pending = [c for c in self._unknownConnections if c.openedAt < limit]
        pending += [c for c in self._connections.values()
                    if c.state == CONNECTION_STATE.CONNECTED and not c.authenticated and c.openedAt < limit]
        for conn in pending:
            conn.refuse('timeout', 'no authenticated handshake within %.1fs' % self._syncObj.conf.handshakeTimeout)

    def _onRefused(self, conn, reason, detail):
        self.refused[reason] += 1
        peer = conn.peerName or '?'
        now = monotonicTime()
        last = self._refusalLogged.get(peer)
        if last is not None and now - last < REFUSAL_LOG_INTERVAL:
            return
        self._refusalLogged[peer] = now
        if len(self._refusalLogged) > 1024:  # bounded: forget the oldest peers
            for key in sorted(self._refusalLogged, key=self._refusalLogged.get)[:512]:
                del self._refusalLogged[key]
        if reason == 'previous_release':
            logger.error('raft wire: refused %s: it speaks the previous release\'s Raft wire (pysyncobj pickle '
                         'frames); this release cannot join a cluster with it: stop every replica and start them '
                         'all on this release (full-cluster restart, see "Upgrading" in the docs)', peer)
        elif reason == 'timeout' and conn.handshake is not None and not isinstance(conn.handshake, tuple):
            logger.warning('raft wire: %s did not answer the handshake (%s); a replica of the previous release '
                           'never does: all replicas must run this release (see "Upgrading" in the docs)', peer,
                           detail)
        else:
            logger.warning('raft wire: refused a frame from %s: %s (%s); connection closed (logged once a minute '
                           'per peer)', peer, reason, detail)

    # ---- incoming connections: hello -> ack -> the dialer's first sealed frame ----

    def _onNewIncomingConnection(self, conn):
        self._unknownConnections.add(conn)
        conn.setOnRefusedCallback(self._onRefused)
        conn.setOnMessageReceivedCallback(functools.partial(self._onIncomingMessageReceived, conn))
        conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))

    def _acceptPeer(self, node):
        """Whether a peer that authenticated may connect (a hook for the chaos transport)."""
        return True

    def _onIncomingMessageReceived(self, conn, message):
        if conn.handshake is None:
            if not isinstance(message, HandshakeFrame):
                conn.refuse('hello', 'expected a hello')
                return
            try:
                _, sender, receiver, nonceD = wire.open_hello(self._key, message.body, ack=False)
            except wire.FrameRefused as e:
                conn.refuse(e.reason, str(e))
                return
            node = self._nodeIdToNode.get(sender)
            if receiver != self._selfId or node is None or self._shouldConnect(node):
                conn.refuse('hello', 'hello from %r to %r: not a member, not for this node, or a peer this '
                            'node dials itself' % (sender, receiver))
                return
            if not self._acceptPeer(node):
                self._unknownConnections.discard(conn)
                conn.disconnect()
                return
            nonceA = os.urandom(16)
            ack = wire.seal_hello(self._key, self._selfId, sender, nonceA, echo=nonceD)
            conn.channel = wire.Channel(self._key, self._selfId, sender, nonceD, nonceA)
            conn.handshake = ('confirm', node)
            conn.sendRaw(wire.PREAMBLE + wire.LENGTH.pack(len(ack)) + ack)
            return
        _, node = conn.handshake
        if isinstance(message, HandshakeFrame) or message.get('type') != 'hello_done':
            conn.refuse('hello', 'expected the handshake confirmation')
            return
        conn.authenticated = True
        conn.peerName = self.wireId(node)
        self._unknownConnections.discard(conn)
        old = self._connections.get(node)
        self._connections[node] = conn
        if old is not None and old is not conn:
            old.disconnect()  # no longer in _connections: its disconnect callback finds no node
        conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
        self._onNodeConnected(node)

    def _onMessageReceived(self, node, message):
        if isinstance(message, HandshakeFrame):
            return
        super(TCPTransport, self)._onMessageReceived(node, message)

    # ---- outgoing connections: this node dials the peers whose address sorts lower ----

    def _shouldConnect(self, node):
        return isinstance(node, TCPNode) and node not in self._preventConnectNodes and self._selfNode.address > node.address

    def _connectIfNecessarySingle(self, node):
        if node in self._connections and self._connections[node].state != CONNECTION_STATE.DISCONNECTED:
            return True
        if not self._shouldConnect(node):
            return False
        assert node in self._connections # Since we "should connect" to this node, there should always be a connection object already in place.
        if node in self._lastConnectAttempt and monotonicTime() - self._lastConnectAttempt[node] < self._syncObj.conf.connectionRetryTime:
            return False
        self._lastConnectAttempt[node] = monotonicTime()
        return self._connections[node].connect(node.ip, node.port)

    def _connectIfNecessary(self):
        for node in self._nodes:
            self._connectIfNecessarySingle(node)

    def _onOutgoingConnected(self, conn, node):
        nonceD = os.urandom(16)
        conn.handshake = nonceD
        conn.peerName = self.wireId(node)
        hello = wire.seal_hello(self._key, self._selfId, self.wireId(node), nonceD)
        conn.setOnMessageReceivedCallback(functools.partial(self._onOutgoingMessageReceived, conn, node))
        conn.sendRaw(wire.PREAMBLE + wire.LENGTH.pack(len(hello)) + hello)

    def _onOutgoingMessageReceived(self, conn, node, message):
        if not isinstance(message, HandshakeFrame) or conn.handshake is None:
            conn.refuse('hello', 'expected the handshake answer')
            return
        try:
            _, sender, receiver, nonceA, echo = wire.open_hello(self._key, message.body, ack=True)
        except wire.FrameRefused as e:
            conn.refuse(e.reason, str(e))
            return
        if sender != self.wireId(node) or receiver != self._selfId or echo != conn.handshake:
            conn.refuse('hello', 'answer from %r to %r does not match this handshake' % (sender, receiver))
            return
        conn.channel = wire.Channel(self._key, self._selfId, sender, conn.handshake, nonceA)
        conn.authenticated = True
        conn.send({'type': 'hello_done'})
        conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
        self._onNodeConnected(node)

    def _onDisconnected(self, conn):
        self._unknownConnections.discard(conn)
        node = self._connToNode(conn)
        if node is not None and node in self._nodes:
            self._onNodeDisconnected(node)
            self._connectIfNecessarySingle(node)

    def waitReady(self):
        self._bindOverEvent.wait()
        if not self._ready:
            raise TransportNotReadyError

    def addNode(self, node):
        self._nodes.add(node)
        self._nodeAddrToNode[node.address] = node
        self._nodeIdToNode[self.wireId(node)] = node
        if self._shouldConnect(node):
            conn = self._newConnection()
            conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn, node))
            conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
            self._connections[node] = conn

    def dropNode(self, node):
        conn = self._connections.pop(node, None)
        if conn is not None:
            # Calling conn.disconnect() immediately triggers the onDisconnected callback if the connection isn't already disconnected, so this is necessary to prevent the automatic reconnect.
            self._preventConnectNodes.add(node)
            conn.disconnect()
            self._preventConnectNodes.remove(node)
        self._nodes.discard(node)
        self._nodeAddrToNode.pop(node.address, None)
        self._nodeIdToNode.pop(self.wireId(node), None)
        self._lastConnectAttempt.pop(node, None)

    def send(self, node, message):
        """Send a message to a node. Returns False if the connection is not authenticated or appears dead."""
        conn = self._connections.get(node)
        if conn is None or conn.state != CONNECTION_STATE.CONNECTED or not conn.authenticated:
            return False
        if self._send_random_sleep_duration:
            time.sleep(random.random() * self._send_random_sleep_duration)
        conn.send(message)
        return conn.state == CONNECTION_STATE.CONNECTED

    def destroy(self):
        self.setOnMessageReceivedCallback(None)
        self.setOnNodeConnectedCallback(None)
        self.setOnNodeDisconnectedCallback(None)
        self.setOnReadonlyNodeConnectedCallback(None)
        self.setOnReadonlyNodeDisconnectedCallback(None)
        for node in list(self._nodes):
            self.dropNode(node)
        if self._server is not None:
            self._server.unbind()
        for conn in list(self._unknownConnections):
            conn.disconnect()
        self._unknownConnections = set()
