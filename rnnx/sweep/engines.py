"""Where the cells of a sweep run: a local pool of processes, a Dask cluster, or a plain loop.

Every engine has ``results(fn, cells)``: an iterator over fn(cell) in the order the cells
finish. The caller (rnnx.sweep.run) writes each result as it arrives, so engines keep no
state worth saving.

Local engine: ``concurrent.futures.ProcessPoolExecutor`` with the "forkserver" start method
(where the platform has it; "spawn" elsewhere), rather than joblib/loky or fork:

* not fork: the parent has usually imported rnnx and scipy by then, and with them
  OpenBLAS's thread pool and rnnx's row-block threads (rnnx.core._row_blocks); forking a
  process that has threads copies their locks in whatever state they are, and a child can
  hang on a lock no thread will ever release. A forkserver child is forked from a small
  server process that has started no threads; spawn starts a fresh interpreter. (So the
  server preloads nothing: importing rnnx there would load OpenBLAS and its threads.)
* not joblib/loky: they would add a dependency to a default install that should stay light,
  for what the standard library already gives (a pool whose processes are reused, results
  as they complete, cancellation); loky's extra, surviving a crashed worker, matters
  less here since every finished cell is already on disk and a rerun resumes.
* one BLAS thread per worker: each cell is a small problem on which BLAS threads (and rnnx's
  own threads, which take their budget from BLAS's) would only fight the other workers for
  the cores. Every engine runs its cells with BLAS limited to one thread (threadpoolctl):
  a pool worker and a Dask worker process for good, the plain loop only while it runs,
  which also keeps every cell's floating-point reductions in one fixed order.

Dask engine: a ``distributed.Client`` (or a scheduler address) runs the cells on its
workers; dask is an optional extra (``pip install "rnnx[dask]"``), imported only here. Give
workers one thread each (``--nthreads 1``): the BLAS limit is per process.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import socket
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

__all__ = ["LocalEngine", "SerialEngine", "DaskEngine", "connect", "DASK_INSTALL_HINT",
           "CONNECT_TIMEOUT"]

DASK_INSTALL_HINT = 'pip install "rnnx[dask]"'
CONNECT_TIMEOUT = 8.0           # seconds to reach a scheduler before giving up


def _start_method():
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


@functools.cache
def _one_blas_thread():
    """Limit the BLAS of this (worker) process to one thread, for good."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1)


def _in_worker(fn, cell):
    """fn(cell) in a worker process, its BLAS limited to one thread."""
    _one_blas_thread()
    return fn(cell)


class SerialEngine:
    """The cells one after another in this process (the baseline of the benchmarks); BLAS
    limited to one thread while they run, as in a worker."""

    name = "serial"

    def results(self, fn, cells):
        from threadpoolctl import threadpool_limits
        for cell in cells:
            with threadpool_limits(limits=1):
                row = fn(cell)
            yield row

    def close(self):
        pass


class LocalEngine:
    """A pool of ``workers`` local processes (default: all cores)."""

    def __init__(self, workers=None):
        if workers is None:
            workers = os.cpu_count() or 1
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1; got {workers!r}")
        self.workers = workers
        self.name = f"local ({workers} worker{'s' if workers > 1 else ''})"
        self._pool = None

    def results(self, fn, cells):
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context(_start_method()))
        # at most 2 cells queued per worker: submitting thousands at once would hold
        # them all in memory and delay an interrupt's cancellation
        pending, todo = set(), iter(cells)
        try:
            while True:
                for cell in todo:
                    pending.add(self._pool.submit(_in_worker, fn, cell))
                    if len(pending) >= 2 * self.workers:
                        break
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BrokenProcessPool:
            raise RuntimeError("a worker process of the local pool died (killed, or out of "
                               "memory); the cells finished so far are saved: rerun the "
                               "same sweep to resume") from None
        finally:
            for future in pending:
                future.cancel()

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError(f"the Dask engine needs dask.distributed: {DASK_INSTALL_HINT}") \
            from None
    return distributed


def _probe(address, timeout):
    """Open and close a TCP connection to a tcp:// address: a refused or unroutable address
    fails here at once, where the Client would retry until its timeout."""
    from urllib.parse import urlsplit
    parts = urlsplit(address)
    if parts.scheme != "tcp":
        return
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise ValueError(f"scheduler: expected tcp://HOST:PORT; got {address!r}")
    with socket.create_connection((host, port), timeout=timeout):
        pass


def _handshake(address, timeout):
    """Dask's own handshake with address, so that a port where no Dask scheduler listens
    fails here, in one line, rather than inside a half-built Client (skipped inside a
    running event loop, e.g. a notebook's, where the Client's own check must do)."""
    import asyncio
    from distributed.comm import connect as open_comm
    try:
        asyncio.get_running_loop()
        return
    except RuntimeError:
        pass

    async def shake():
        comm = await open_comm(address, timeout=timeout)
        await comm.close()
    try:
        asyncio.run(asyncio.wait_for(shake(), timeout))
    except (OSError, TimeoutError, asyncio.TimeoutError):
        raise
    except Exception as e:  # noqa: BLE001 -- whatever answered there speaks no Dask
        raise ConnectionError(f"no Dask scheduler answered the handshake "
                              f"({type(e).__name__})") from None


def connect(address, timeout=CONNECT_TIMEOUT):
    """A distributed.Client of the scheduler at address; ConnectionError in one line when
    it cannot be reached within timeout seconds."""
    try:
        _probe(address, timeout)            # before importing distributed: fails fastest
    except OSError as e:
        raise ConnectionError(f"cannot reach the Dask scheduler at {address!r} within "
                              f"{timeout:g} s ({e})") from None
    distributed = _distributed()
    try:
        _handshake(address, timeout)
        return distributed.Client(address, timeout=timeout, set_as_default=False)
    except Exception as e:  # noqa: BLE001 -- refused, timed out, or not a Dask scheduler
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConnectionError(f"cannot reach the Dask scheduler at {address!r} within "
                              f"{timeout:g} s ({reason})") from None


class DaskEngine:
    """The cells on the workers of a dask.distributed Client (or a scheduler address: the
    engine then owns the connection and closes it)."""

    def __init__(self, client):
        distributed = _distributed()
        self._owned = isinstance(client, str)
        if self._owned:
            client = connect(client)
        if not isinstance(client, distributed.Client):
            raise TypeError(f"engine must be a dask.distributed.Client, a scheduler address, "
                            f"'local', 'serial' or None; got {type(client).__name__}")
        self.client = client
        self.name = "dask"

    def results(self, fn, cells):
        distributed = _distributed()
        run = uuid.uuid4().hex[:8]      # keys unique per call: a cell may run again later
        futures = [self.client.submit(_in_worker, fn, cell,
                                      key=f"rnnx-cell-{cell.key}-{run}")
                   for cell in cells]
        try:
            for future in distributed.as_completed(futures):
                yield future.result()
                future.release()
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()

    def close(self):
        if self._owned:
            self.client.close()
