# haco fork of pysyncobj 0.3.17 (MIT, see LICENSE.txt): every change is listed in PATCHES.md.
import time
import random
import os
import sys
import threading
import weakref
import collections
import functools
import struct
import logging
import copy
import types
try:
    import Queue
    is_py3 = False

    def iteritems(v):
        return v.iteritems()
except ImportError:  # python3
    import queue as Queue
    is_py3 = True
    xrange = range

    def iteritems(v):
        return v.items()

import msgpack

from .dns_resolver import globalDnsResolver
from .poller import createPoller

try:
    from .pipe_notifier import PipeNotifier
    PIPE_NOTIFIER_ENABLED = True
except ImportError:
    PIPE_NOTIFIER_ENABLED = False

from .serializer import Serializer, SERIALIZER_STATE
from .node import Node, TCPNode
from .transport import Transport, TCPTransport, TransportNotReadyError
from .journal import createJournal
from . import legacy
from . import members as _members
from .config import SyncObjConf, FAIL_REASON
from .version import VERSION
from .fast_queue import FastQueue
from .monotonic import monotonic as monotonicTime

logger = logging.getLogger(__name__)


class _RAFT_STATE:
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2

class _COMMAND_TYPE:
    REGULAR = 0  # the previous release: a pickled (funcID, args); converted at start (legacy.py)
    NO_OP = 1
    MEMBERSHIP = 2  # not used by haco; converted to NO_OP at start
    VERSION = 3  # not used by haco; converted to NO_OP at start
    ENTRY = 4  # haco: the rest of the command is haco's own msgpack entry, handed to the applier
    MEMBERS = 5  # haco: a cluster configuration (members.py), in effect once in the log

_bchr = functools.partial(struct.pack, 'B')


class SyncObjException(Exception):
    def __init__(self, errorCode, *args, **kwargs):
        Exception.__init__(self, errorCode, *args, **kwargs)
        self.errorCode = errorCode


# https://github.com/bakwc/PySyncObj

class SyncObj(object):
    def __init__(self, selfNode, otherNodes, conf, applier, journal=None, nodeClass = TCPNode, transportClass = TCPTransport,
                 members=None, membersLearned=False):
        """
        The Raft node. haco's fork: the state machine is one callable.

        :param selfNode: address of the current node server 'host:port'
        :param otherNodes: addresses of partner nodes ['host1:port1', 'host2:port2', ...]
        :param conf: configuration object
        :type conf: SyncObjConf
        :param applier: applier(entry: bytes, index: int) -> result, on the tick thread for each committed entry
        :param journal: an open journal (the Journal interface, journal.py); None: an in-memory one
        :param transportClass: the Transport subclass to be used for transferring messages to and from other nodes
        :param members: haco: the configuration to start from, [[id, addr, voter, meta], ...] (members.py);
            None: selfNode and otherNodes, all voters. A membership entry in the journal, or a dump whose
            configuration was learned from the log, takes precedence.
        :param membersLearned: `members` was learned from a cluster (a joining node), not configured
        """

        self.__conf = conf
        self.__conf.validate()
        self.__applier = applier

        origSelfNode = selfNode
        if not isinstance(selfNode, Node) and selfNode is not None:
            selfNode = nodeClass(selfNode)
        self.__selfNode = selfNode
        self.__otherNodes = set() # set of Node
        for otherNode in otherNodes:
            if otherNode == origSelfNode:
                continue
            if not isinstance(otherNode, Node):
                otherNode = nodeClass(otherNode)
            self.__otherNodes.add(otherNode)
        self.__readonlyNodes = set() # set of Node
        self.__connectedNodes = set() # set of Node
        self.__nodeClass = nodeClass

        self.__raftState = _RAFT_STATE.FOLLOWER
        self.__raftCurrentTerm = 0
        self.__votedForNodeId = None
        self.__votesCount = 0
        self.__raftLeader = None
        self.__raftElectionDeadline = monotonicTime() + self.__generateRaftTimeout()
        # Set while a leadership transfer (Raft 'TimeoutNow') is pending, to stop
        # the outgoing leader's heartbeats from postponing the forced election.
        self.__transferInProgress = False
        if journal is None:
            journal = createJournal(self.__conf.journalFile)
        self.__raftLog = journal
        legacy.convert_journal(self.__raftLog)
        if len(self.__raftLog) == 0:
            self.__raftLog.add(_bchr(_COMMAND_TYPE.NO_OP), 1, self.__raftCurrentTerm)
        # Restore raft persistent state (see raft paper §5 - currentTerm and votedFor
        # must survive restarts, otherwise already-committed entries may be overwritten
        # by a stale member after a simultaneous restart of the cluster). The max() with
        # the last log term covers journals written by versions that did not store the
        # term: currentTerm is always >= the term of the last log entry.
        self.__raftCurrentTerm = max(self.__raftLog.getCurrentTerm(), self.__getCurrentLogTerm())
        self.__votedForNodeId = self.__raftLog.getVotedForNodeId()
        self.__raftCommitIndex = self.__raftLog.getRaftCommitIndex()
        self.__raftLastApplied = 1
        # haco: membership (members.py, PATCHES.md #13)
        self.__selfId = self.__conf.nodeId or (selfNode.address if selfNode is not None else None)
        if members is None:
            ids = self.__conf.nodeIds or {}
            members = [[ids.get(n.address, n.address), n.address, True, {}] for n in [selfNode] + sorted(
                self.__otherNodes, key=lambda n: n.address)]
        self.__baseMembers = _members.normalize(members)
        self.__baseLearned = bool(membersLearned)
        self.__memberChanges = []  # [(log index, members)] of the MEMBERS entries in the log, in order
        self.__members = self.__baseMembers
        self.__voters = set()
        self.lastMembershipRefusal = None
        self.__scanMemberChanges(0)
        self.__otherNodes = set(nodeClass(m[1]) for m in self.__members if m[1] != selfNode.address)
        self.__voters = self.__votersOf(self.__members)
        nodeIds = dict(self.__conf.nodeIds or {})
        nodeIds.update((m[1], m[0]) for m in self.__members)
        self.__conf.nodeIds = nodeIds
        self.__raftNextIndex = {}
        self.__lastResponseTime = {}
        self.__raftMatchIndex = {}
        self.__lastSerializedTime = monotonicTime()
        self.__lastSerializedEntry = None
        self.__forceLogCompaction = False
        self.__leaderCommitIndex = None
        self.__onReadyCalled = False
        self.__noopIDx = None
        self.__destroying = False
        self.__recvTransmission = b''
        # haco: see PATCHES.md
        self.__holdCommands = False  # while leadership is handed over: the command queue is not drained
        self.__voteUnsent = set()  # voters this candidate's request for a vote did not reach yet
        self.__lastTickStart = monotonicTime()  # when the last completed tick started
        self.__streamBudget = self.__conf.streamChunksPerTick
        self.sentMessages = 0  # append_entries messages sent with entries or as heartbeats, as leader
        self.sentEntries = 0  # log entries those messages carried

        self.__onTickCallbacks = []
        self.__onTickCallbacksLock = threading.Lock()

        self.__startTime = monotonicTime()
        self.__numOneSecondDumps = 0
        globalDnsResolver().setTimeouts(self.__conf.dnsCacheTime, self.__conf.dnsFailCacheTime)
        globalDnsResolver().setPreferredAddrFamily(self.__conf.preferredAddrType)
        self.__serializer = Serializer(self.__conf.fullDumpFile,
                                       self.__conf.logCompactionBatchSize,
                                       self.__conf.serializer,
                                       self.__conf.deserializer,
                                       self.__conf.serializeChecker,
                                       self.__conf.dumpPublishLock)
        self.__lastInitTryTime = 0
        self._poller = createPoller(self.__conf.pollerType)

        self.__transport = transportClass(self, self.__selfNode, self.__otherNodes)
        self.__transport.setOnNodeConnectedCallback(self.__onNodeConnected)
        self.__transport.setOnNodeDisconnectedCallback(self.__onNodeDisconnected)
        self.__transport.setOnMessageReceivedCallback(self.__onMessageReceived)
        self.__transport.setOnReadonlyNodeConnectedCallback(self.__onReadonlyNodeConnected)
        self.__transport.setOnReadonlyNodeDisconnectedCallback(self.__onReadonlyNodeDisconnected)

        self.__selfCodeVersion = 0
        self.__enabledCodeVersion = 0

        self.__thread = None
        self.__mainThread = None
        self.__initialised = None
        self.__commandsQueue = FastQueue(self.__conf.commandsQueueSize)
        if not self.__conf.appendEntriesUseBatch and PIPE_NOTIFIER_ENABLED:
            self.__pipeNotifier = PipeNotifier(self._poller)
        self.__needLoadDumpFile = True

        self.__lastReadonlyCheck = 0
        self.__newAppendEntriesTime = 0

        self.__commandsWaitingCommit = collections.defaultdict(list)  # logID => [(termID, callback), ...]
        self.__commandsLocalCounter = 0
        self.__commandsWaitingReply = {}  # commandLocalCounter => callback

        if self.__conf.autoTick:
            self.__mainThread = threading.current_thread()
            self.__initialised = threading.Event()
            self.__thread = threading.Thread(target=SyncObj._autoTickThread, args=(weakref.proxy(self),),
                                             name='raft-tick')
            self.__thread.start()
            self.__initialised.wait()
        else:
            try:
                while not self.__transport.ready:
                    self.__transport.tryGetReady()
            except TransportNotReadyError:
                logger.exception('failed to perform initialization')
                raise SyncObjException('BindError') # Backwards compatibility

    def destroy(self):
        """
        Correctly destroy SyncObj. Stop autoTickThread, close connections, etc.
        """
        if self.__conf.autoTick:
            self.__destroying = True
        else:
            self._doDestroy()

    def tick_thread_alive(self):
        """
        Check if the tick thread is alive.
        """
        if self.__thread and self.__thread.is_alive():
            return True
        return False

    def destroy_synchronous(self):
        """
        Correctly destroy SyncObj. Stop autoTickThread, close connections, etc. and ensure the threads are gone.
        """
        self.destroy()
        self.__thread.join()

    def waitReady(self):
        """
        Waits until the transport is ready for operation.

        :raises TransportNotReadyError: if the transport fails to get ready
        """
        self.__transport.waitReady()

    def waitBinded(self):
        """
        Waits until initialized (binded port).
        If success - just returns.
        If failed to initialized after conf.maxBindRetries - raise SyncObjException.
        """
        try:
            self.__transport.waitReady()
        except TransportNotReadyError:
            raise SyncObjException('BindError')
        if not self.__transport.ready:
            raise SyncObjException('BindError')

    def _destroy(self):
        self.destroy()

    def _doDestroy(self):
        self.__transport.destroy()
        self.__raftLog._destroy()

    # ---- haco additions (PATCHES.md) ----

    def propose(self, entry, callback):
        """Append haco's entry (bytes) to the log; callback(result, FAIL_REASON) on any thread's queue."""
        self._applyCommand(entry, callback, _COMMAND_TYPE.ENTRY)

    def holdCommands(self, hold=True):
        """Stop (or resume) draining the command queue, forwarded commands included: while
        leadership is handed over the log stops growing (Raft's transfer rule)."""
        self.__holdCommands = hold

    def postponeElection(self, seconds):
        """Push this node's election deadline at least `seconds` out (tick thread)."""
        self.__raftElectionDeadline = max(self.__raftElectionDeadline, monotonicTime() + seconds)

    def wireStats(self):
        return self.__transport.wireStats()

    def transferLeadership(self, node=None, callback=None):
        """Gracefully transfer raft leadership to another node (Raft 'TimeoutNow').

        Must be called on the current leader. The target node must be fully
        caught up (matchIndex == leader's last log index), otherwise the
        request is denied. If node is None, the most caught-up connected
        follower is selected automatically. Async and best-effort: a
        successful callback only means the request was sent; poll
        getStatus()['leader'] to confirm the transfer completed.

        :param node: target node object or 'nodeHost:nodePort' (None = auto)
        :type node: Node | str | None
        :param callback: will be called on success or fail
        :type callback: function(`FAIL_REASON <#pysyncobj.FAIL_REASON>`_, None)
        """
        if self.__raftState != _RAFT_STATE.LEADER:
            self.__callErrCallback(FAIL_REASON.NOT_LEADER, callback)
            return
        if node is not None and not isinstance(node, Node):
            node = self.__nodeClass(node)
        if node is None:
            candidates = [(self.__raftMatchIndex.get(n, 0), n.id, n)
                          for n in self.__otherNodes if n in self.__connectedNodes and n in self.__voters]
            if not candidates:
                self.__callErrCallback(FAIL_REASON.REQUEST_DENIED, callback)
                return
            node = max(candidates)[2]
        if node == self.__selfNode or node not in self.__otherNodes or node not in self.__voters:
            self.__callErrCallback(FAIL_REASON.REQUEST_DENIED, callback)
            return
        if self.__raftMatchIndex.get(node, 0) != self.__getCurrentLogIndex():
            # target is not fully synced - transferring would fail the election
            self.__callErrCallback(FAIL_REASON.REQUEST_DENIED, callback)
            return
        self.__transport.send(node, {
            'type': 'timeout_now',
            'term': self.__raftCurrentTerm,
        })
        if callback is not None:
            callback(None, FAIL_REASON.SUCCESS)

    # ---- haco: membership (members.py, PATCHES.md #13) ----

    def changeMembers(self, op, nodeId, addr=None, meta=None, callback=None):
        """Propose one membership change (op: learner, promote, remove) on the leader; callback(None,
        FAIL_REASON) once its entry is committed (SUCCESS) or refused (REQUEST_DENIED: another change is
        uncommitted, this leader has not committed an entry of its term yet, or the change is not
        allowed; NOT_LEADER on a follower: membership changes are never forwarded)."""
        request = msgpack.packb({'op': op, 'id': nodeId, 'addr': addr, 'meta': dict(meta or {})}, use_bin_type=True)
        self._applyCommand(request, callback, _COMMAND_TYPE.MEMBERS)

    def members(self):
        """The configuration in effect here: [[id, addr, voter, meta], ...] (a copy; any thread)."""
        return [list(m[:3]) + [dict(m[3])] for m in self.__members]

    def membersLearned(self):
        """Whether the configuration came from the log (a change, or a dump recording one)."""
        return self.__baseLearned or bool(self.__memberChanges)

    def membershipInFlight(self):
        """True while a membership entry in this node's log is not committed yet."""
        changes = self.__memberChanges
        return bool(changes) and changes[-1][0] > self.__raftCommitIndex

    def isVoter(self):
        return self.__selfNode in self.__voters

    def memberProgress(self):
        """On the leader: address -> (match index, seconds since its last answer, connected)."""
        now = monotonicTime()
        out = {}
        for node in list(self.__otherNodes):
            last = self.__lastResponseTime.get(node)
            out[node.address] = (self.__raftMatchIndex.get(node, 0), None if last is None else now - last,
                                 node in self.__connectedNodes)
        return out

    def leaderReady(self):
        """On the leader: an entry of its term (its no-op) is committed, so it may change membership."""
        return self.__raftState == _RAFT_STATE.LEADER and self.__noopIDx is not None and \
            self.__raftCommitIndex >= self.__noopIDx

    def lastLogIndex(self):
        return self.__getCurrentLogIndex()

    def __votersOf(self, members):
        addrs = {m[1] for m in members if m[2]}
        voters = set(n for n in self.__otherNodes if n.address in addrs)
        if self.__selfNode is not None and self.__selfNode.address in addrs:
            voters.add(self.__selfNode)
        return voters

    def __quorum(self, counted):
        """Whether the voters for which counted(node) holds (this node: counted(None)) are a majority."""
        count = sum(1 for n in self.__voters if n != self.__selfNode and counted(n))
        if self.__selfNode in self.__voters and counted(None):
            count += 1
        return count >= _members.majority(len(self.__voters))

    def __scanMemberChanges(self, afterIdx):
        """Rebuild the list of membership entries from the log (entries after afterIdx) and apply it."""
        changes = []
        for i in xrange(len(self.__raftLog)):
            command, idx, _term = self.__raftLog[i]
            if idx > afterIdx and command[:1] == _bchr(_COMMAND_TYPE.MEMBERS):
                try:
                    changes.append((idx, _members.decode(bytes(command[1:]))[2]))
                except _members.MembershipError as exc:
                    logger.warning('membership entry %d ignored: %s', idx, exc)
        self.__memberChanges = changes
        self.__setMembers(changes[-1][1] if changes else self.__baseMembers)

    def __onEntriesAppended(self, afterIdx, newEntries):
        """The log now ends with newEntries right after afterIdx (anything after it was replaced):
        a truncated configuration is dropped, an appended one takes effect."""
        changed = False
        while self.__memberChanges and self.__memberChanges[-1][0] > afterIdx:
            self.__memberChanges.pop()
            changed = True
        for entry in newEntries:
            if entry[0][:1] == _bchr(_COMMAND_TYPE.MEMBERS):
                try:
                    self.__memberChanges.append((entry[1], _members.decode(bytes(entry[0][1:]))[2]))
                    changed = True
                except _members.MembershipError as exc:
                    logger.warning('membership entry %d ignored: %s', entry[1], exc)
        if changed:
            self.__setMembers(self.__memberChanges[-1][1] if self.__memberChanges else self.__baseMembers)

    def __membersAt(self, idx):
        for changeIdx, members in reversed(self.__memberChanges):
            if changeIdx <= idx:
                return members, True
        return self.__baseMembers, self.__baseLearned

    def __setMembers(self, members):
        """Make `members` the configuration in effect: the transport dials new members and drops
        removed ones; a leader starts replicating to new ones from its log's end."""
        if self.__selfNode is None:
            return
        old = {(n.address, self.__transport.wireId(n)): n for n in self.__otherNodes} \
            if hasattr(self, '_SyncObj__transport') else None
        self.__members = members
        wanted = {(m[1], m[0]) for m in members if m[1] != self.__selfNode.address}
        if old is not None:
            # copy on write: other threads (getStatus, memberProgress) iterate the set in place
            self.__otherNodes = set(self.__otherNodes)
            for key, node in old.items():
                if key not in wanted:
                    self.__otherNodes.discard(node)
                    self.__connectedNodes.discard(node)
                    self.__serializer.cancelTransmisstion(node)
                    self.__transport.dropNode(node)
                    for d in (self.__raftNextIndex, self.__raftMatchIndex, self.__lastResponseTime):
                        d.pop(node, None)
            for key in wanted - set(old):
                node = self.__nodeClass(key[0])
                self.__transport.setWireId(key[0], key[1])
                self.__otherNodes.add(node)
                self.__transport.addNode(node)
                self.__raftNextIndex[node] = self.__getCurrentLogIndex() + 1
                self.__raftMatchIndex[node] = 0
                self.__lastResponseTime[node] = monotonicTime()
        self.__voters = self.__votersOf(members)

    def __leaderMembershipChange(self, command, requestNode):
        """The log entry for a membership request on the leader, or None (lastMembershipRefusal says why)."""
        reason = None
        if requestNode is not None:
            reason = 'membership changes are not forwarded'
        elif self.membershipInFlight():
            reason = 'another membership change is not committed yet'
        elif self.__noopIDx is None or self.__raftCommitIndex < self.__noopIDx:
            reason = 'this leader has not committed an entry of its term yet'
        if reason is None:
            try:
                request = msgpack.unpackb(command[1:], raw=False)
                new = _members.change(self.__members, request['op'], request['id'], request.get('addr'),
                                      request.get('meta'), leader_id=self.__selfId)
                return _bchr(_COMMAND_TYPE.MEMBERS) + _members.encode(request['op'], request['id'], new)
            except (_members.MembershipError, KeyError, TypeError, ValueError) as exc:
                reason = str(exc)
        self.lastMembershipRefusal = reason
        logger.warning('membership change refused: %s', reason)
        return None

    def _applyCommand(self, command, callback, commandType = None):
        try:
            if commandType is None:
                self.__commandsQueue.put_nowait((command, callback))
            else:
                self.__commandsQueue.put_nowait((_bchr(commandType) + command, callback))
            if not self.__conf.appendEntriesUseBatch and PIPE_NOTIFIER_ENABLED:
                self.__pipeNotifier.notify()
        except Queue.Full:
            self.__callErrCallback(FAIL_REASON.QUEUE_FULL, callback)

    def _checkCommandsToApply(self):
        if self.__holdCommands:
            return
        startTime = monotonicTime()
        appended = False

        while monotonicTime() - startTime < self.__conf.appendEntriesPeriod:
            if self.__raftLeader is None and self.__conf.commandsWaitLeader:
                break
            try:
                command, callback = self.__commandsQueue.get_nowait()
            except Queue.Empty:
                break

            requestNode, requestID = None, None
            if isinstance(callback, tuple):
                requestNode, requestID = callback

            if self.__raftState == _RAFT_STATE.LEADER:
                idx, term = self.__getCurrentLogIndex() + 1, self.__raftCurrentTerm
                if ord(command[:1]) == _COMMAND_TYPE.MEMBERS:
                    command = self.__leaderMembershipChange(command, requestNode)
                    if command is None:
                        self.__callErrCallback(FAIL_REASON.REQUEST_DENIED, callback)
                        continue
                elif ord(command[:1]) != _COMMAND_TYPE.ENTRY:  # a forwarded command must be haco's own
                    self.__callErrCallback(FAIL_REASON.REQUEST_DENIED, callback)
                    continue

                self.__raftLog.add(command, idx, term)
                appended = True
                if ord(command[:1]) == _COMMAND_TYPE.MEMBERS:
                    self.__onEntriesAppended(idx - 1, [(command, idx, term)])

                if requestNode is None:
                    if callback is not None:
                        self.__commandsWaitingCommit[idx].append((term, callback))
                else:
                    self.__transport.send(requestNode, {
                        'type': 'apply_command_response',
                        'request_id': requestID,
                        'log_idx': idx,
                        'log_term': term,
                    })

            elif ord(command[:1]) == _COMMAND_TYPE.MEMBERS:
                self.lastMembershipRefusal = 'not the leader'
                self.__callErrCallback(FAIL_REASON.NOT_LEADER, callback)
            elif self.__raftLeader is not None:
                if requestNode is None:
                    message = {
                        'type': 'apply_command',
                        'command': command,
                    }

                    if callback is not None:
                        self.__commandsLocalCounter += 1
                        self.__commandsWaitingReply[self.__commandsLocalCounter] = callback
                        message['request_id'] = self.__commandsLocalCounter

                    self.__transport.send(self.__raftLeader, message)
                else:
                    self.__transport.send(requestNode, {
                        'type': 'apply_command_response',
                        'request_id': requestID,
                        'error': FAIL_REASON.NOT_LEADER,
                    })
            else:
                self.__callErrCallback(FAIL_REASON.MISSING_LEADER, callback)

        # haco: one send of everything appended in this drain, not one per command
        if appended and not self.__conf.appendEntriesUseBatch:
            self.__sendAppendEntries()

    def _autoTickThread(self):
        try:
            self.__transport.tryGetReady()
        except TransportNotReadyError:
            logger.exception('failed to perform initialization')
            return
        finally:
            self.__initialised.set()
        time.sleep(0.1)
        try:
            while True:
                if not self.__mainThread.is_alive():
                    break
                if self.__destroying:
                    self._doDestroy()
                    break
                try:
                    self._onTick(self.__conf.autoTickPeriod)
                except Exception:
                    # log, wait a little and retry
                    logger.exception('failed _onTick in _autoTickThread')
                    time.sleep(self.__conf.autoTickPeriod)
        except ReferenceError:
            pass

    def doTick(self, timeToWait=0.0):
        """Performs single tick. Should be called manually if `autoTick <#pysyncobj.SyncObjConf.autoTick>`_ disabled

        :param timeToWait: max time to wait for next tick. If zero - perform single tick without waiting for new events.
            Otherwise - wait for new socket event and return.
        :type timeToWait: float
        """
        assert not self.__conf.autoTick
        self._onTick(timeToWait)

    def _onTick(self, timeToWait=0.0):
        started = monotonicTime()
        self.__streamBudget = self.__conf.streamChunksPerTick
        try:
            self.__tick(timeToWait)
        finally:
            previousStart, self.__lastTickStart = self.__lastTickStart, started
            took = monotonicTime() - started - timeToWait
            if took > self.__conf.tickStallLimit and self.__conf.onTickStall is not None:
                self.__conf.onTickStall(took)

    def __tick(self, timeToWait):
        if not self.__transport.ready:
            try:
                self.__transport.tryGetReady()
            except TransportNotReadyError:
                # Implicitly handled in the 'if not self.__transport.ready' below
                pass

        if not self.__transport.ready:
            time.sleep(timeToWait)
            self.__applyLogEntries()
            return

        if self.__needLoadDumpFile:
            if self.__conf.fullDumpFile is not None and os.path.isfile(self.__conf.fullDumpFile):
                self.__loadDumpFile(clearJournal=False)
            self.__needLoadDumpFile = False

        workTime = monotonicTime() - self.__startTime
        if workTime > self.__numOneSecondDumps:
            self.__numOneSecondDumps += 1
            self.__raftLog.onOneSecondTimer()

        if self.__raftState in (_RAFT_STATE.FOLLOWER, _RAFT_STATE.CANDIDATE) and self.__selfNode is not None:
            # haco: only once a whole tick (its poll included) ran after the deadline passed: a
            # tick that started late (GIL, CPU, a long apply) has the leader's heartbeats unread
            # haco: a learner, or a node not (or no longer) in the configuration, never stands
            if self.__raftElectionDeadline < monotonicTime() and self.__lastTickStart >= self.__raftElectionDeadline \
                    and self.__connectedToAnyone() and self.__selfNode in self.__voters:
                self.__raftElectionDeadline = monotonicTime() + self.__generateRaftTimeout()
                self.__transferInProgress = False
                self.__raftLeader = None
                self.__setState(_RAFT_STATE.CANDIDATE)
                self.__setCurrentTerm(self.__raftCurrentTerm + 1, self.__selfNode.id)
                self.__votesCount = 1
                # haco: a request that could not be sent (an idle connection found dead on send) is sent
                # again when the connection is back, within this election (PATCHES.md #14)
                self.__voteUnsent = set()
                for node in self.__otherNodes:
                    if not self.__sendVoteRequest(node) and node in self.__voters:
                        self.__voteUnsent.add(node)
                self.__onLeaderChanged()
                if self.__votesCount >= _members.majority(len(self.__voters)):
                    self.__onBecomeLeader()

        if self.__raftState == _RAFT_STATE.LEADER:

            commitIdx = self.__raftCommitIndex
            nextCommitIdx = self.__raftCommitIndex

            while commitIdx < self.__getCurrentLogIndex():
                commitIdx += 1
                # haco: a majority of the voters in effect (learners do not count)
                if not self.__quorum(lambda n: n is None or self.__raftMatchIndex[n] >= commitIdx):
                    break
                entries = self.__getEntries(commitIdx, 1)
                if not entries:
                    continue
                commitTerm = entries[0][2]
                if commitTerm != self.__raftCurrentTerm:
                    continue
                nextCommitIdx = commitIdx

            if self.__raftCommitIndex != nextCommitIdx:
                self.__raftCommitIndex = nextCommitIdx
                self.__raftLog.setRaftCommitIndex(self.__raftCommitIndex)

            self.__leaderCommitIndex = self.__raftCommitIndex
            deadline = monotonicTime() - self.__conf.leaderFallbackTimeout
            if not self.__quorum(lambda n: n is None or self.__lastResponseTime[n] > deadline):
                self.__setState(_RAFT_STATE.FOLLOWER)
                self.__raftLeader = None

        needSendAppendEntries = self.__applyLogEntries()

        if self.__raftState == _RAFT_STATE.LEADER:
            if monotonicTime() > self.__newAppendEntriesTime or needSendAppendEntries:
                self.__sendAppendEntries()

        if not self.__onReadyCalled and self.__raftLastApplied == self.__leaderCommitIndex:
            if self.__conf.onReady:
                self.__conf.onReady()
            self.__onReadyCalled = True

        self._checkCommandsToApply()
        self.__tryLogCompaction()

        with self.__onTickCallbacksLock:
            for callback in self.__onTickCallbacks:
                callback()

        self._poller.poll(timeToWait)

    def __applyLogEntries(self):
        needSendAppendEntries = False

        if self.__raftCommitIndex > self.__raftLastApplied:
            count = self.__raftCommitIndex - self.__raftLastApplied
            entries = self.__getEntries(self.__raftLastApplied + 1, count)
            guard = self.__conf.applyGuard
            for entry in entries:
                currentTermID = entry[2]
                try:
                    res = self.__doApplyCommand(entry[0], entry[1])
                except Exception as exc:  # retried on the next tick, like stock; the guard may stop the process
                    if guard is None:
                        raise
                    guard.failed(entry[1], exc)
                    break
                subscribers = self.__commandsWaitingCommit.pop(entry[1], [])
                for subscribeTermID, callback in subscribers:
                    if subscribeTermID == currentTermID:
                        callback(res, FAIL_REASON.SUCCESS)
                    else:
                        callback(None, FAIL_REASON.DISCARDED)

                self.__raftLastApplied += 1
                if guard is not None:
                    guard.ok(entry[1])

            if not self.__conf.appendEntriesUseBatch:
                needSendAppendEntries = True

        return needSendAppendEntries

    def addOnTickCallback(self, callback):
        with self.__onTickCallbacksLock:
            self.__onTickCallbacks.append(callback)

    def removeOnTickCallback(self, callback):
        with self.__onTickCallbacksLock:
            try:
                self.__onTickCallbacks.remove(callback)
            except ValueError:
                # callback not in list, ignore
                pass

    def isNodeConnected(self, node):
        """
        Checks if the given node is connected
        :param node: node to check
        :type node: Node
        :rtype: bool
        """
        return node in self.__connectedNodes

    @property
    def selfNode(self):
        """
        :rtype: Node
        """
        return self.__selfNode

    @property
    def otherNodes(self):
        """
        :rtype: set of Node
        """
        return self.__otherNodes.copy()

    @property
    def readonlyNodes(self):
        """
        :rtype: set of Node
        """
        return self.__readonlyNodes.copy()

    @property
    def raftLastApplied(self):
        """
        :rtype: int
        """
        return self.__raftLastApplied

    @property
    def raftCommitIndex(self):
        """
        :rtype: int
        """
        return self.__raftCommitIndex

    @property
    def raftCurrentTerm(self):
        """
        :rtype: int
        """
        return self.__raftCurrentTerm

    @property
    def hasQuorum(self):
        '''
        Does the cluster have a quorum according to this node

        :rtype: bool
        '''

        return self.__quorum(lambda n: n is None or n in self.__connectedNodes)  # haco: voters only

    def getStatus(self):
        """Dumps different debug info about cluster to dict and return it"""

        status = {}
        status['version'] = VERSION
        status['revision'] = 'deprecated'
        status['self'] = self.selfNode
        status['state'] = self.__raftState
        status['leader'] = self.__raftLeader
        status['has_quorum'] = self.hasQuorum
        status['partner_nodes_count'] = len(self.__otherNodes)
        for node in self.__otherNodes:
            status['partner_node_status_server_' + node.id] = 2 if self.isNodeConnected(node) else 0
        status['readonly_nodes_count'] = len(self.__readonlyNodes)
        for node in self.__readonlyNodes:
            status['readonly_node_status_server_' + node.id] = 2 if self.isNodeConnected(node) else 0
        status['log_len'] = len(self.__raftLog)
        status['last_applied'] = self.raftLastApplied
        status['commit_idx'] = self.raftCommitIndex
        status['raft_term'] = self.raftCurrentTerm
        status['next_node_idx_count'] = len(self.__raftNextIndex)
        for node, idx in iteritems(self.__raftNextIndex):
            status['next_node_idx_server_' + node.id] = idx
        status['match_idx_count'] = len(self.__raftMatchIndex)
        for node, idx in iteritems(self.__raftMatchIndex):
            status['match_idx_server_' + node.id] = idx
        status['leader_commit_idx'] = self.__leaderCommitIndex
        status['uptime'] = int(monotonicTime() - self.__startTime)
        status['self_code_version'] = self.__selfCodeVersion
        status['enabled_code_version'] = self.__enabledCodeVersion
        return status

    def printStatus(self):
        """Dumps different debug info about cluster to default logger"""
        status = self.getStatus()
        for k, v in iteritems(status):
            logger.info('%s: %s' % (str(k), str(v)))

    def _printStatus(self):
        self.printStatus()

    def forceLogCompaction(self):
        """Force to start log compaction (without waiting required time or required number of entries)"""
        self.__forceLogCompaction = True

    def __doApplyCommand(self, command, index):
        commandType = ord(command[:1])
        if commandType == _COMMAND_TYPE.ENTRY:
            return self.__applier(command[1:], index)
        if commandType in (_COMMAND_TYPE.NO_OP, _COMMAND_TYPE.MEMBERS):  # MEMBERS took effect when appended
            return None
        # a command this release cannot read (a previous-release one that did not convert, or damage)
        raise legacy.LegacyFormatError('entry %d has command type %d' % (index, commandType))

    def __onMessageReceived(self, node, message):

        if message['type'] == 'timeout_now' and self.__selfNode is not None:
            # Graceful leadership transfer (Raft 'TimeoutNow'): trigger an
            # immediate election, but only on request of the current leader.
            if message['term'] >= self.__raftCurrentTerm and node == self.__raftLeader:
                self.__raftElectionDeadline = 0
                self.__transferInProgress = True

        if message['type'] == 'request_vote' and self.__selfNode is not None:
            if node not in self.__voters:
                return  # haco: a learner or a removed node: no vote, and its term changes nothing here

            if message['term'] > self.__raftCurrentTerm:
                self.__setCurrentTerm(message['term'], None)
                self.__setState(_RAFT_STATE.FOLLOWER)
                self.__raftLeader = None

            if self.__raftState in (_RAFT_STATE.FOLLOWER, _RAFT_STATE.CANDIDATE):
                lastLogTerm = message['last_log_term']
                lastLogIdx = message['last_log_index']
                if message['term'] >= self.__raftCurrentTerm:
                    if lastLogTerm < self.__getCurrentLogTerm():
                        return
                    if lastLogTerm == self.__getCurrentLogTerm() and \
                            lastLogIdx < self.__getCurrentLogIndex():
                        return
                    if self.__votedForNodeId is not None:
                        return

                    self.__setCurrentTerm(self.__raftCurrentTerm, node.id)

                    self.__raftElectionDeadline = monotonicTime() + self.__generateRaftTimeout()
                    self.__transport.send(node, {
                        'type': 'response_vote',
                        'term': message['term'],
                    })

        if message['type'] == 'append_entries' and message['term'] >= self.__raftCurrentTerm:
            if message['term'] > self.__raftCurrentTerm:
                # A new leader at a higher term supersedes any pending transfer.
                self.__transferInProgress = False
            if not self.__transferInProgress:
                # While a transfer is pending, ignore same-term heartbeats from
                # the outgoing leader so they can't postpone the forced election.
                self.__raftElectionDeadline = monotonicTime() + self.__generateRaftTimeout()
            if self.__raftLeader != node:
                self.__onLeaderChanged()
            self.__raftLeader = node
            if message['term'] > self.__raftCurrentTerm:
                self.__setCurrentTerm(message['term'], None)
            self.__setState(_RAFT_STATE.FOLLOWER)
            newEntries = message.get('entries', [])
            serialized = message.get('serialized', None)
            leaderCommitIndex = message['commit_index']
            if 'prevLogIdx' not in message:
                # haco: this follower's log is known to match the leader's only up to the last entry
                # of a message whose position it checked; a message without one (a snapshot chunk, or
                # a heartbeat to a follower being streamed one) commits nothing beyond what is
                # committed here already (else entries of an old term, never committed, were applied)
                leaderCommitIndex = min(leaderCommitIndex, self.__raftCommitIndex)
            self.__leaderCommitIndex = leaderCommitIndex

            # Regular append entries
            if 'prevLogIdx' in message:
                transmission = message.get('transmission', None)
                if transmission is not None:
                    if transmission == 'start':
                        self.__recvTransmission = message['data']
                        self.__sendNextNodeIdx(node, success=False, reset=False)
                        return
                    elif transmission == 'process':
                        if len(self.__recvTransmission) + len(message['data']) > self.__conf.frameBytesMax:
                            logger.warning('dropped a chunked log entry over %d bytes', self.__conf.frameBytesMax)
                            self.__recvTransmission = b''
                            return
                        self.__recvTransmission += message['data']
                        self.__sendNextNodeIdx(node, success=False, reset=False)
                        return
                    elif transmission == 'finish':
                        self.__recvTransmission += message['data']
                        entry = msgpack.unpackb(self.__recvTransmission, raw=False)
                        self.__recvTransmission = b''
                        if not (type(entry) is list and len(entry) == 3 and type(entry[0]) is bytes
                                and type(entry[1]) is int and type(entry[2]) is int):
                            logger.warning('dropped a malformed chunked log entry')
                            return
                        newEntries = [entry]
                    else:
                        raise Exception('Wrong transmission type')

                prevLogIdx = message['prevLogIdx']
                prevLogTerm = message['prevLogTerm']
                prevEntries = self.__getEntries(prevLogIdx)
                if not prevEntries:
                    self.__sendNextNodeIdx(node, success=False, reset=True)
                    return
                if prevEntries[0][2] != prevLogTerm:
                    self.__sendNextNodeIdx(node, nextNodeIdx = prevLogIdx, success = False, reset=True)
                    return
                if len(prevEntries) > 1:
                    if prevLogIdx + 1 <= self.__raftLastApplied:
                        logger.critical(
                            'truncating already-applied log entries from index %d '
                            '(last applied: %d) - state machine may have diverged from '
                            'other cluster members', prevLogIdx + 1, self.__raftLastApplied)
                    self.__deleteEntriesFrom(prevLogIdx + 1)
                for entry in newEntries:
                    self.__raftLog.add(*entry)
                self.__onEntriesAppended(prevLogIdx, newEntries)

                nextNodeIdx = prevLogIdx + 1
                if newEntries:
                    nextNodeIdx = newEntries[-1][1] + 1

                self.__sendNextNodeIdx(node, nextNodeIdx=nextNodeIdx, success=True)

            # Install snapshot
            elif serialized is not None:
                if self.__serializer.setTransmissionData(serialized):
                    self.__loadDumpFile(clearJournal=True)
                    self.__sendNextNodeIdx(node, success=True)
                else:
                    # haco: answer each chunk (neither success nor reset: the leader notes a
                    # response), or a long stream looked like a dead follower and was restarted
                    self.__sendNextNodeIdx(node, success=False, reset=False)

            # If the log was truncated below the commit index, don't persist a commit
            # index covering entries that are no longer the committed ones.
            if self.__raftCommitIndex > self.__getCurrentLogIndex():
                self.__raftCommitIndex = self.__getCurrentLogIndex()

            if leaderCommitIndex > self.__raftCommitIndex:
                self.__raftCommitIndex = min(leaderCommitIndex, self.__getCurrentLogIndex())

            self.__raftLog.setRaftCommitIndex(self.__raftCommitIndex)

        if message['type'] == 'apply_command':
            if 'request_id' in message:
                self._applyCommand(message['command'], (node, message['request_id']))
            else:
                self._applyCommand(message['command'], None)

        if message['type'] == 'apply_command_response':
            requestID = message['request_id']
            error = message.get('error', None)
            callback = self.__commandsWaitingReply.pop(requestID, None)
            if callback is not None:
                if error is not None:
                    callback(None, error)
                else:
                    idx = message['log_idx']
                    term = message['log_term']
                    if idx <= self.__raftLastApplied:
                        # Stale apply_command_response:
                        # The log position was already applied (e.g. via snapshot installed after leader reconnect)
                        # before this response was processed. Or the leader was restarted without notice (and remains leader).
                        # The command outcome cannot be tracked; signal the caller so it can retry rather than hanging
                        # forever.
                        callback(None, FAIL_REASON.UNKNOWN_OUTCOME)
                    else:
                        self.__commandsWaitingCommit[idx].append((term, callback))

        if self.__raftState == _RAFT_STATE.CANDIDATE:
            if message['type'] == 'response_vote' and message['term'] == self.__raftCurrentTerm \
                    and node in self.__voters:
                self.__votesCount += 1

                if self.__votesCount >= _members.majority(len(self.__voters)):
                    self.__onBecomeLeader()

        if self.__raftState == _RAFT_STATE.LEADER:
            if message['type'] == 'next_node_idx':
                reset = message['reset']
                nextNodeIdx = message['next_node_idx']
                success = message['success']

                currentNodeIdx = nextNodeIdx - 1
                if reset:
                    self.__raftNextIndex[node] = nextNodeIdx
                if success:
                    if self.__raftMatchIndex[node] < currentNodeIdx:
                        self.__raftMatchIndex[node] = currentNodeIdx
                        # haco: an ack moves nextIndex forward only; the entries after the acked
                        # one are on their way already (stock rewound it: each was re-sent)
                        if reset:
                            self.__raftNextIndex[node] = nextNodeIdx
                        else:
                            self.__raftNextIndex[node] = max(self.__raftNextIndex[node], nextNodeIdx)
                self.__lastResponseTime[node] = monotonicTime()

    def __callErrCallback(self, err, callback):
        if callback is None:
            return
        if isinstance(callback, tuple):
            requestNode, requestID = callback
            self.__transport.send(requestNode, {
                'type': 'apply_command_response',
                'request_id': requestID,
                'error': err,
            })
            return
        callback(None, err)

    def __sendNextNodeIdx(self, node, reset=False, nextNodeIdx = None, success = False):
        if nextNodeIdx is None:
            nextNodeIdx = self.__getCurrentLogIndex() + 1
        self.__transport.send(node, {
            'type': 'next_node_idx',
            'next_node_idx': nextNodeIdx,
            'reset': reset,
            'success': success,
        })

    def __generateRaftTimeout(self):
        minTimeout = self.__conf.raftMinTimeout
        maxTimeout = self.__conf.raftMaxTimeout
        return minTimeout + (maxTimeout - minTimeout) * random.random()

    def __onReadonlyNodeConnected(self, node):
        self.__readonlyNodes.add(node)
        self.__connectedNodes.add(node)
        self.__raftNextIndex[node] = self.__getCurrentLogIndex() + 1
        self.__raftMatchIndex[node] = 0

    def __onReadonlyNodeDisconnected(self, node):
        self.__readonlyNodes.discard(node)
        self.__connectedNodes.discard(node)
        self.__raftNextIndex.pop(node, None)
        self.__raftMatchIndex.pop(node, None)
        node._destroy()

    def __onNodeConnected(self, node):
        self.__connectedNodes.add(node)
        if self.__raftState == _RAFT_STATE.CANDIDATE and node in self.__voteUnsent:
            self.__voteUnsent.discard(node)
            self.__sendVoteRequest(node)

    def __sendVoteRequest(self, node):
        return self.__transport.send(node, {
            'type': 'request_vote',
            'term': self.__raftCurrentTerm,
            'last_log_index': self.__getCurrentLogIndex(),
            'last_log_term': self.__getCurrentLogTerm(),
        })

    def __onNodeDisconnected(self, node):
        self.__connectedNodes.discard(node)

    def __getCurrentLogIndex(self):
        return self.__raftLog[-1][1]

    def __getCurrentLogTerm(self):
        return self.__raftLog[-1][2]

    def __getPrevLogIndexTerm(self, nextNodeIndex):
        prevIndex = nextNodeIndex - 1
        entries = self.__getEntries(prevIndex, 1)
        if entries:
            return prevIndex, entries[0][2]
        return None, None

    def __getEntries(self, fromIDx, count=None, maxSizeBytes = None):
        firstEntryIDx = self.__raftLog[0][1]
        if fromIDx is None or fromIDx < firstEntryIDx:
            return []
        diff = fromIDx - firstEntryIDx
        if count is None:
            result = self.__raftLog[diff:]
        else:
            result = self.__raftLog[diff:diff + count]
        if maxSizeBytes is None:
            return result
        # haco: a batch stays under maxSizeBytes unless it is one entry (sent in chunks), so a
        # frame stays under the wire's bound (stock also took the entry that crossed it)
        totalSize = 0
        for i, entry in enumerate(result):
            totalSize += len(entry[0])
            if totalSize >= maxSizeBytes:
                return result[:max(i, 1)]
        return result

    def _isLeader(self):
        """ Check if current node has a leader state.
        WARNING: there could be multiple leaders at the same time!

        :return: True if leader, False otherwise
        :rtype: bool
        """
        return self.__raftState == _RAFT_STATE.LEADER

    def _getLeader(self):
        """ Returns last known leader.

        WARNING: this information could be outdated, eg. there could be another leader selected!
        WARNING: there could be multiple leaders at the same time!

        :return: the last known leader node.
        :rtype: Node
        """
        return self.__raftLeader

    def isReady(self):
        """Check if current node is initially synced with others and has an actual data.

        :return: True if ready, False otherwise
        :rtype: bool
        """
        return self.__onReadyCalled

    def _isReady(self):
        return self.isReady()

    def _getTerm(self):
        return self.__raftCurrentTerm

    def _getRaftLogSize(self):
        return len(self.__raftLog)

    def __deleteEntriesFrom(self, fromIDx):
        firstEntryIDx = self.__raftLog[0][1]
        diff = fromIDx - firstEntryIDx
        if diff < 0:
            return
        self.__raftLog.deleteEntriesFrom(diff)

    def __deleteEntriesTo(self, toIDx):
        firstEntryIDx = self.__raftLog[0][1]
        diff = toIDx - firstEntryIDx
        if diff < 0:
            return
        self.__raftLog.deleteEntriesTo(diff)

    def __onBecomeLeader(self):
        self.__raftLeader = self.__selfNode
        self.__setState(_RAFT_STATE.LEADER)

        self.__lastResponseTime.clear()
        for node in self.__otherNodes | self.__readonlyNodes:
            self.__raftNextIndex[node] = self.__getCurrentLogIndex() + 1
            self.__raftMatchIndex[node] = 0
            self.__lastResponseTime[node] = monotonicTime()

        # No-op command after leader election.
        idx, term = self.__getCurrentLogIndex() + 1, self.__raftCurrentTerm
        self.__raftLog.add(_bchr(_COMMAND_TYPE.NO_OP), idx, term)
        self.__noopIDx = idx
        if not self.__conf.appendEntriesUseBatch:
            self.__sendAppendEntries()

        self.__sendAppendEntries()

    def __setCurrentTerm(self, term, votedForNodeId):
        self.__raftCurrentTerm = term
        self.__votedForNodeId = votedForNodeId
        self.__raftLog.setCurrentTerm(term, votedForNodeId)

    def __setState(self, newState):
        oldState = self.__raftState
        self.__raftState = newState
        if oldState != newState:
            # haco: a snapshot stream never resumes across roles or terms (a follower drops the
            # chunks of an old term, so a resumed stream made a corrupt file)
            self.__serializer.cancelAllTransmissions()
        callback = self.__conf.onStateChanged
        if callback is not None and oldState != newState:
            callback(oldState, newState)

    def __onLeaderChanged(self):
        for id in sorted(self.__commandsWaitingReply):
            self.__commandsWaitingReply[id](None, FAIL_REASON.LEADER_CHANGED)
        self.__commandsWaitingReply = {}

    def __sendAppendEntries(self):
        """pysyncobj's sender with haco's changes (PATCHES.md): a published dump is streamed also
        while a newer one is written; a follower with nothing to send is skipped, not spun on; at
        most streamChunksPerTick chunks per tick; messages and entries are counted."""
        self.__newAppendEntriesTime = monotonicTime() + self.__conf.appendEntriesPeriod

        startTime = monotonicTime()

        batchSizeBytes = self.__conf.appendEntriesBatchSizeBytes

        for node in self.__otherNodes | self.__readonlyNodes:
            if node not in self.__connectedNodes:
                self.__serializer.cancelTransmisstion(node)
                continue

            sendSingle = True
            sendingSerialized = False
            nextNodeIndex = self.__raftNextIndex[node]

            while nextNodeIndex <= self.__getCurrentLogIndex() or sendSingle or sendingSerialized:
                if nextNodeIndex > self.__raftLog[0][1]:
                    prevLogIdx, prevLogTerm = self.__getPrevLogIndexTerm(nextNodeIndex)
                    entries = []
                    if nextNodeIndex <= self.__getCurrentLogIndex():
                        entries = self.__getEntries(nextNodeIndex, None, batchSizeBytes)
                        self.__raftNextIndex[node] = entries[-1][1] + 1

                    if len(entries) == 1 and len(entries[0][0]) >= batchSizeBytes:
                        entry = msgpack.packb(list(entries[0]), use_bin_type=True)
                        for pos in xrange(0, len(entry), batchSizeBytes):
                            currData = entry[pos:pos + batchSizeBytes]
                            if pos == 0:
                                transmission = 'start'
                            elif pos + batchSizeBytes >= len(entry):
                                transmission = 'finish'
                            else:
                                transmission = 'process'
                            message = {
                                'type': 'append_entries',
                                'transmission': transmission,
                                'data': currData,
                                'term': self.__raftCurrentTerm,
                                'commit_index': self.__raftCommitIndex,
                                'prevLogIdx': prevLogIdx,
                                'prevLogTerm': prevLogTerm,
                            }
                            self.__transport.send(node, message)
                            if node not in self.__connectedNodes:
                                break
                    else:
                        message = {
                            'type': 'append_entries',
                            'term': self.__raftCurrentTerm,
                            'commit_index': self.__raftCommitIndex,
                            'entries': entries,
                            'prevLogIdx': prevLogIdx,
                            'prevLogTerm': prevLogTerm,
                        }
                        self.__transport.send(node, message)
                        self.sentMessages += 1
                        self.sentEntries += len(entries)
                        if node not in self.__connectedNodes:
                            break
                else:
                    transmissionData = None
                    if self.__streamBudget > 0:
                        transmissionData = self.__serializer.getTransmissionData(node)
                    message = {
                        'type': 'append_entries',
                        'term': self.__raftCurrentTerm,
                        'commit_index': self.__raftCommitIndex,
                        'serialized': transmissionData,  # None: a heartbeat
                    }
                    self.__transport.send(node, message)
                    if node not in self.__connectedNodes or transmissionData is None:
                        break
                    self.__streamBudget -= 1
                    if transmissionData[2]:  # the last chunk
                        self.__raftNextIndex[node] = self.__raftLog[1][1] + 1
                        sendingSerialized = False
                    else:
                        sendingSerialized = True

                nextNodeIndex = self.__raftNextIndex[node]

                sendSingle = False

                delta = monotonicTime() - startTime
                if delta > self.__conf.appendEntriesPeriod:
                    break

    def __connectedToAnyone(self):
        return len(self.__connectedNodes) > 0 or len(self.__otherNodes) == 0

    def _getConf(self):
        return self.__conf

    @property
    def conf(self):
        return self.__conf

    def __tryLogCompaction(self):
        currTime = monotonicTime()
        serializeState, serializeID = self.__serializer.checkSerializing()

        if serializeState == SERIALIZER_STATE.SUCCESS:
            self.__lastSerializedTime = currTime
            self.__deleteEntriesTo(serializeID)
            self.__lastSerializedEntry = serializeID

        if serializeState == SERIALIZER_STATE.FAILED:
            logger.warning('Failed to store full dump')

        if serializeState != SERIALIZER_STATE.NOT_SERIALIZING:
            return

        if len(self.__raftLog) <= self.__conf.logCompactionMinEntries and \
                                currTime - self.__lastSerializedTime <= self.__conf.logCompactionMinTime and \
                not self.__forceLogCompaction:
            return

        if self.__conf.logCompactionSplit and not self.__forceLogCompaction:
            # haco: a forced compaction (an operator's `haco operator compact`) skips the window
            allNodeIds = sorted([node.id for node in (self.__otherNodes | {self.__selfNode})])
            nodesCount = len(allNodeIds)
            selfIdx = allNodeIds.index(self.__selfNode.id)
            interval = self.__conf.logCompactionMinTime
            periodStart = int(currTime / interval ) * interval
            nodeInterval = float(interval) / nodesCount
            nodeIntervalStart = periodStart + selfIdx * nodeInterval
            nodeIntervalEnd = nodeIntervalStart + 0.3 * nodeInterval
            if currTime < nodeIntervalStart or currTime >= nodeIntervalEnd:
                return

        if self.__serializer.isTransmitting():
            # haco: put off while this node streams its dump to a follower (a writer would take
            # the stream's CPU, and the stream its file); retried one logCompactionMinTime later
            self.__lastSerializedTime = currTime
            if not self.__forceLogCompaction:  # a forced one is retried every tick: quietly
                logger.info('snapshot deferred: the dump is being streamed to a follower')
            return

        self.__forceLogCompaction = False

        lastAppliedEntries = self.__getEntries(self.__raftLastApplied - 1, 2)
        if len(lastAppliedEntries) < 2 or lastAppliedEntries[0][1] == self.__lastSerializedEntry:
            self.__lastSerializedTime = currTime
            return

        # haco: the configuration in effect at the dump's index (members.py)
        members, learned = self.__membersAt(lastAppliedEntries[1][1])
        cluster = {'members': members, 'learned': learned}
        self.__serializer.serialize((lastAppliedEntries[1], lastAppliedEntries[0], cluster), lastAppliedEntries[0][1])

    def __loadDumpFile(self, clearJournal):
        try:
            data = self.__serializer.deserialize()  # (lastAppliedEntry, prevEntry, clusterNodes)
            last, prev = tuple(data[0]), tuple(data[1])
            if clearJournal or \
                    len(self.__raftLog) < 2 or \
                    tuple(self.__raftLog[0]) != prev or \
                    tuple(self.__raftLog[1]) != last:
                self.__raftLog.clear()
                self.__raftLog.add(*prev)
                self.__raftLog.add(*last)

            self.__raftLastApplied = last[1]
            # haco: a dump records the configuration at its index; a streamed one is the leader's, a
            # local one wins over the configured peers once membership was changed through the log
            cluster = data[2]
            if isinstance(cluster, dict) and (clearJournal or cluster.get('learned')):
                self.__baseMembers = _members.normalize(cluster['members'])
                self.__baseLearned = bool(cluster.get('learned'))
            self.__scanMemberChanges(last[1])
            if self.__raftCurrentTerm < last[2]:
                # haco: a data dir holding a dump and no journal meta (a restored snapshot, a lost
                # meta file): the term never goes below the dump's last entry's, or a leader of a
                # lower term would append entries a stale log of the dump's term outranks
                self.__setCurrentTerm(last[2], None)

            if self.__raftCommitIndex > self.__getCurrentLogIndex():
                logger.warning('raftCommitIndex (%d) exceeds journal end (%d) after loading dump, '
                               'likely due to unsynced journal entries lost on crash; '
                               'clamping to journal end',
                               self.__raftCommitIndex, self.__getCurrentLogIndex())
                self.__raftCommitIndex = self.__getCurrentLogIndex()
                self.__raftLog.setRaftCommitIndex(self.__raftCommitIndex)
        except:
            logger.exception('failed to load full dump')

