"""Snapshot files: haco's own serializer writes them, this module streams them to followers.

Fork changes against pysyncobj 0.3.17 (PATCHES.md): only a custom serializer (no pickled
in-memory or gzip dumps, no fork); the published file is streamed also while a newer one is
being written (the writer publishes atomically, so the file is always complete); a received
stream is written and renamed into place under `publishLock`; streams can all be cancelled.
"""

import logging
import os
import threading

from .atomic_replace import atomicReplace
from .config import SERIALIZER_STATE

logger = logging.getLogger(__name__)


class Serializer(object):
    def __init__(self, fileName, transmissionBatchSize, serializer, deserializer, serializeChecker,
                 publishLock=None):
        if fileName is None or serializer is None or deserializer is None:
            raise ValueError('the fork needs fullDumpFile, serializer and deserializer')
        self.__fileName = fileName
        self.__transmissionBatchSize = transmissionBatchSize
        self.__busy = False
        self.__currentID = 0
        self.__transmissions = {}
        self.__incomingTransmissionFile = None
        self.__serializer = serializer
        self.__deserializer = deserializer
        self.__serializeChecker = serializeChecker
        self.__publishLock = publishLock if publishLock is not None else threading.Lock()

    def checkSerializing(self):
        if self.__serializeChecker is None:
            state = SERIALIZER_STATE.SUCCESS if self.__busy else SERIALIZER_STATE.NOT_SERIALIZING
            self.__busy = False
            return state, self.__currentID
        status = self.__serializeChecker()
        if status in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self.__busy = False
        return status, self.__currentID

    def serialize(self, data, id):
        """data: (lastAppliedEntry, prevEntry, clusterNodes) as pysyncobj passes a custom serializer."""
        if self.__busy:
            return
        self.__currentID = id
        self.__busy = True
        tmpFile = self.__fileName + '.tmp'
        try:
            self.__serializer(tmpFile, data)
        except Exception:
            logger.exception('serializer failed')
            return
        if os.path.exists(tmpFile):  # a synchronous serializer wrote it; an asynchronous one publishes itself
            atomicReplace(tmpFile, self.__fileName)

    def deserialize(self):
        return self.__deserializer(self.__fileName)

    def isTransmitting(self):
        return bool(self.__transmissions)

    def getTransmissionData(self, transmissionID):
        """The next chunk of the published dump for one follower: (data, isFirst, isLast), or None."""
        transmission = self.__transmissions.get(transmissionID, None)
        if transmission is None:
            try:
                self.__transmissions[transmissionID] = transmission = {
                    'file': open(self.__fileName, 'rb'),
                    'transmitted': 0,
                }
            except Exception:
                logger.exception('Failed to open file for transmission')
                self.__transmissions.pop(transmissionID, None)
                return None
        isFirst = transmission['transmitted'] == 0
        try:
            data = transmission['file'].read(self.__transmissionBatchSize)
        except Exception:
            logger.exception('Error reading transmission file')
            self.cancelTransmisstion(transmissionID)
            return None
        size = len(data)
        transmission['transmitted'] += size
        isLast = size == 0
        if isLast:
            self.cancelTransmisstion(transmissionID)
        return data, isFirst, isLast

    def setTransmissionData(self, data):
        """Write one received chunk; True once the whole dump is in place (under publishLock)."""
        if data is None:
            return False
        with self.__publishLock:
            return self.__setTransmissionData(data)

    def __setTransmissionData(self, data):
        data, isFirst, isLast = data
        tmpFile = self.__fileName + '.1.tmp'
        if isFirst:
            if self.__incomingTransmissionFile is not None:
                self.__incomingTransmissionFile.close()
            try:
                self.__incomingTransmissionFile = open(tmpFile, 'wb')
            except Exception:
                logger.exception('Failed to open file for incoming transition')
                self.__incomingTransmissionFile = None
                return False
        elif self.__incomingTransmissionFile is None:
            return False
        try:
            self.__incomingTransmissionFile.write(data)
        except Exception:
            logger.exception('Failed to write incoming transition data')
            self.__incomingTransmissionFile = None
            return False
        if isLast:
            self.__incomingTransmissionFile.close()
            self.__incomingTransmissionFile = None
            try:
                atomicReplace(tmpFile, self.__fileName)
            except Exception:
                logger.exception('Failed to rename temporary incoming transition file')
                return False
            return True
        return False

    def cancelTransmisstion(self, id):
        transmission = self.__transmissions.pop(id, None)
        if transmission is not None:
            transmission['file'].close()

    def cancelAllTransmissions(self):
        for id in list(self.__transmissions):
            self.cancelTransmisstion(id)
