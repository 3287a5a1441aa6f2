# Fork: frames are haco's wire (wire.py), read into bounded buffers; PATCHES.md, "wire".
import time
import socket
from sys import platform

from .poller import POLL_EVENT_TYPE
from .monotonic import monotonic as monotonicTime
from . import wire


class CONNECTION_STATE:
    DISCONNECTED = 0
    CONNECTING = 1
    CONNECTED = 2

def _getAddrType(addr):
    try:
        socket.inet_aton(addr)
        return socket.AF_INET
    except socket.error:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, addr)
        return socket.AF_INET6
    except socket.error:
        pass
    raise Exception('unknown address type')

import socket

def set_keepalive_linux(sock, after_idle_sec=1, interval_sec=3, max_fails=5):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, after_idle_sec)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval_sec)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max_fails)

def set_keepalive_osx(sock, after_idle_sec=1, interval_sec=3, max_fails=5):
    TCP_KEEPALIVE = 0x10
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, TCP_KEEPALIVE, interval_sec)

def set_keepalive_windows(sock, after_idle_sec=1, interval_sec=3, max_fails=5):
    sock.ioctl(socket.SIO_KEEPALIVE_VALS, (1, after_idle_sec * 1000, interval_sec * 1000))

def set_keepalive(sock, after_idle_sec=1, interval_sec=3, max_fails=5):
    if platform == "linux" or platform == "linux2":
        set_keepalive_linux(sock, after_idle_sec, interval_sec, max_fails)
    elif platform == "darwin":
        set_keepalive_osx(sock, after_idle_sec, interval_sec, max_fails)
    elif platform == "win32":
        set_keepalive_windows(sock, after_idle_sec, interval_sec, max_fails)


class HandshakeFrame(object):
    """A frame received before the connection authenticated: the transport checks it."""
    __slots__ = ('body',)

    def __init__(self, body):
        self.body = body


class TcpConnection(object):

    def __init__(self, poller, onMessageReceived = None, onConnected = None, onDisconnected = None,
                 socket=None, timeout=10.0, sendBufferSize = 2 ** 13, recvBufferSize = 2 ** 13,
                 keepalive=None, handshakeBytesMax=512, frameBytesMax=64 * 2 ** 20, onRefused=None):
        #: wire.Channel once the handshake gave both nonces; before it, frames are HandshakeFrame bodies
        self.channel = None
        #: True once the peer proved it holds the session key (its first sealed frame verified)
        self.authenticated = False
        self.openedAt = monotonicTime()
        self.peerName = None  #: a node id once known, else the remote address (for logs and counters)
        self.handshake = None  #: the transport's handshake state for this connection

        self.__socket = socket
        self.__readBuffer = bytearray()
        self.__writeBuffer = bytearray()
        self.__preambleSeen = False
        self.__lastReadTime = monotonicTime()
        self.__timeout = timeout
        self.__poller = poller
        self.__keepalive = keepalive
        self.__handshakeBytesMax = handshakeBytesMax
        self.__frameBytesMax = frameBytesMax
        self.__onRefused = onRefused
        if socket is not None:
            self.__socket = socket
            self.__fileno = socket.fileno()
            self.__state = CONNECTION_STATE.CONNECTED
            try:
                self.peerName = socket.getpeername()[0]  # the address only: one log line per host
            except OSError:
                self.peerName = '?'
            self.setSockoptKeepalive()
            self.__poller.subscribe(self.__fileno,
                                     self.__processConnection,
                                     POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.WRITE | POLL_EVENT_TYPE.ERROR)
        else:
            self.__state = CONNECTION_STATE.DISCONNECTED
            self.__fileno = None
            self.__socket = None

        self.__onMessageReceived = onMessageReceived
        self.__onConnected = onConnected
        self.__onDisconnected = onDisconnected
        self.__sendBufferSize = sendBufferSize
        self.__recvBufferSize = recvBufferSize

    def setSockoptKeepalive(self):
        if self.__socket is None:
            return
        if self.__keepalive is None:
            return
        set_keepalive(
            self.__socket,
            self.__keepalive[0],
            self.__keepalive[1],
            self.__keepalive[2],
        )

    def setOnConnectedCallback(self, onConnected):
        self.__onConnected = onConnected

    def setOnMessageReceivedCallback(self, onMessageReceived):
        self.__onMessageReceived = onMessageReceived

    def setOnDisconnectedCallback(self, onDisconnected):
        self.__onDisconnected = onDisconnected

    def setOnRefusedCallback(self, onRefused):
        self.__onRefused = onRefused

    def connect(self, host, port):
        if host is None:
            return False
        self.__state = CONNECTION_STATE.DISCONNECTED
        self.__fileno = None
        self.__socket = socket.socket(_getAddrType(host), socket.SOCK_STREAM)
        self.__socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.__sendBufferSize)
        self.__socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.__recvBufferSize)
        self.__socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.setSockoptKeepalive()
        self.__socket.setblocking(0)
        self.__readBuffer = bytearray()
        self.__writeBuffer = bytearray()
        self.__preambleSeen = False
        self.channel = None
        self.authenticated = False
        self.handshake = None
        self.openedAt = self.__lastReadTime = monotonicTime()

        try:
            self.__socket.connect((host, port))
        except socket.error as e:
            if e.errno not in (socket.errno.EINPROGRESS, socket.errno.EWOULDBLOCK):
                return False
        self.__fileno = self.__socket.fileno()
        self.__state = CONNECTION_STATE.CONNECTING
        self.__poller.subscribe(self.__fileno,
                                 self.__processConnection,
                                 POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.WRITE | POLL_EVENT_TYPE.ERROR)
        return True

    def send(self, message):
        """Seal and send one Raft message (the connection must be authenticated)."""
        self.__writeBuffer += self.channel.seal(message)
        self.__trySendBuffer()

    def sendRaw(self, data):
        """Send bytes as they are: the preamble and the handshake frames."""
        self.__writeBuffer += data
        self.__trySendBuffer()

    def fileno(self):
        return self.__fileno

    def refuse(self, reason, detail=''):
        """Count and log (the transport's callback) a refused frame, then drop the connection."""
        if self.__onRefused is not None:
            self.__onRefused(self, reason, detail)
        self.disconnect()

    def disconnect(self):
        needCallDisconnect = False
        if self.__onDisconnected is not None and self.__state != CONNECTION_STATE.DISCONNECTED:
            needCallDisconnect = True
        self.channel = None
        self.authenticated = False
        self.handshake = None
        if self.__socket is not None:
            self.__socket.close()
            self.__socket = None
        if self.__fileno is not None:
            self.__poller.unsubscribe(self.__fileno)
            self.__fileno = None
        self.__writeBuffer = bytearray()
        self.__readBuffer = bytearray()
        self.__state = CONNECTION_STATE.DISCONNECTED
        if needCallDisconnect:
            self.__onDisconnected()

    def getSendBufferSize(self):
        return len(self.__writeBuffer)

    def __processConnection(self, descr, eventType):
        poller = self.__poller
        if descr != self.__fileno:
            poller.unsubscribe(descr)
            return

        if eventType & POLL_EVENT_TYPE.ERROR:
            self.disconnect()
            return

        self.__processConnectionTimeout()
        if self.state == CONNECTION_STATE.DISCONNECTED:
            return

        if eventType & POLL_EVENT_TYPE.READ or eventType & POLL_EVENT_TYPE.WRITE:
            if self.__socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.disconnect()
                return

            if self.__state == CONNECTION_STATE.CONNECTING:
                self.__state = CONNECTION_STATE.CONNECTED
                self.__lastReadTime = monotonicTime()
                if self.__onConnected is not None:
                    self.__onConnected()
                return

        if eventType & POLL_EVENT_TYPE.WRITE:
            self.__trySendBuffer()
            if self.__state == CONNECTION_STATE.DISCONNECTED:
                return
            event = POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR
            if len(self.__writeBuffer) > 0:
                event |= POLL_EVENT_TYPE.WRITE
            poller.subscribe(descr, self.__processConnection, event)

        if eventType & POLL_EVENT_TYPE.READ:
            self.__tryReadBuffer()
            if self.__state == CONNECTION_STATE.DISCONNECTED:
                return

            while True:
                try:
                    message = self.__processParseMessage()
                except wire.FrameRefused as e:
                    self.refuse(e.reason, str(e))
                    return
                if message is None:
                    break
                if self.__onMessageReceived is not None:
                    self.__onMessageReceived(message)
                if self.__state == CONNECTION_STATE.DISCONNECTED:
                    return

    def __processConnectionTimeout(self):
        if monotonicTime() - self.__lastReadTime > self.__timeout:
            self.disconnect()
            return

    def __trySendBuffer(self):
        self.__processConnectionTimeout()
        if self.state == CONNECTION_STATE.DISCONNECTED:
            return
        while self.__processSend():
            pass

    def __processSend(self):
        if not self.__writeBuffer:
            return False
        try:
            res = self.__socket.send(self.__writeBuffer)
            if res < 0:
                self.disconnect()
                return False
            if res == 0:
                return False
            del self.__writeBuffer[:res]
            return True
        except socket.error as e:
            if e.errno not in (socket.errno.EAGAIN, socket.errno.EWOULDBLOCK):
                self.disconnect()
            return False

    def __tryReadBuffer(self):
        while self.__processRead():
            pass
        self.__lastReadTime = monotonicTime()

    def __readLimit(self):
        """Bytes this connection may still buffer: before it authenticates, one handshake frame."""
        if self.authenticated:
            return self.__recvBufferSize
        return len(wire.PREAMBLE) + wire.LENGTH.size + self.__handshakeBytesMax - len(self.__readBuffer)

    def __processRead(self):
        limit = self.__readLimit()
        if limit <= 0:
            return False  # the parser decides (a whole handshake frame is buffered, or it is refused)
        try:
            incoming = self.__socket.recv(min(limit, self.__recvBufferSize))
        except socket.error as e:
            if e.errno not in (socket.errno.EAGAIN, socket.errno.EWOULDBLOCK):
                self.disconnect()
            return False
        if not incoming:
            self.disconnect()
            return False
        self.__readBuffer += incoming
        return True

    def __processParseMessage(self):
        buf = self.__readBuffer
        if not self.__preambleSeen:
            n = len(wire.PREAMBLE)
            if len(buf) < n:
                return None
            if bytes(buf[:n]) != wire.PREAMBLE:
                if wire.looks_like_previous_release(bytes(buf[:10])):
                    raise wire.FrameRefused('previous_release', 'the peer speaks the previous release\'s Raft wire')
                raise wire.FrameRefused('not_haco', 'the connection does not start with the haco Raft preamble')
            del buf[:n]
            self.__preambleSeen = True
        if len(buf) < 4:
            return None
        l = wire.LENGTH.unpack_from(buf)[0]
        bound = self.__frameBytesMax if self.authenticated else self.__handshakeBytesMax
        if l > bound:
            raise wire.FrameRefused('length', 'frame length %d over the bound %d' % (l, bound))
        if len(buf) - 4 < l:
            return None
        body = bytes(buf[4:4 + l])
        del buf[:4 + l]
        if self.channel is None:
            return HandshakeFrame(body)
        return self.channel.open(body)

    @property
    def state(self):
        return self.__state
