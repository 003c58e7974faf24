"""pg_callback's benchmark: every measurement of BENCHMARKS.md against a running cluster (with
the worker) and a local nginx receiver, printed as a table. Started by bench/run.sh, which
sets both up and tears them down. All traffic goes to loopback."""

import argparse
import os
import re
import signal
import statistics
import subprocess
import tempfile
import threading
import time

import psycopg

SLOW_SECONDS = 2.0
DRAINED = "SELECT NOT EXISTS (SELECT FROM callback.callbacks_undone)"
EVENTS_RENDERED = "SELECT NOT EXISTS (SELECT FROM callback.events)"
BATCHED = "SELECT NOT EXISTS (SELECT FROM callback.events) AND NOT EXISTS (SELECT FROM callback.batch_events WHERE callback_id IS NULL)"


class Bench:
    def __init__(self, args):
        self.args = args
        self.arrivals_log = os.path.join(args.nginx_dir, "arrivals.log")
        self.receiver = f"http://127.0.0.1:{args.nginx_port}"
        self.receiver_tls = f"https://127.0.0.1:{args.nginx_tls_port}"
        self.rows = []
        # Which durability settings this pass runs with (bench/run.sh runs both).
        self.label = args.label
        # Drain rates by backlog size, for the growth row.
        self.drains = {}

    # --- plumbing -------------------------------------------------------------------------
    def connect(self, autocommit=True):
        return psycopg.connect(host=self.args.cluster_dir, port=self.args.port, user="postgres",
                               dbname=self.args.database, autocommit=autocommit)

    def sql(self, query, params=None):
        with self.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else None

    def one(self, query, params=None):
        rows = self.sql(query, params)
        return rows[0][0] if rows else None

    def wait_for(self, query, timeout, params=None, every=0.05):
        deadline = time.monotonic() + timeout
        while not self.one(query, params):
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout} s waiting for: {query}")
            time.sleep(every)

    def reset(self, url_path="/dlr/${id}", workers_note=None, receiver=None):
        """A fresh extension, an account, a list whose URL is the receiver, a campaign."""
        self.sql("DROP EXTENSION IF EXISTS pg_callback CASCADE")
        self.sql("CREATE EXTENSION pg_callback")
        self.sql("INSERT INTO callback.accounts (name) VALUES ('bench')")
        self.sql("INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'bench', %s)",
                 [(receiver or self.receiver) + url_path])
        self.sql("INSERT INTO callback.campaigns (list_id, name) VALUES (1, 'bench')")

    def clear_arrivals(self):
        time.sleep(0.3)  # nginx flushes its log buffer every 100 ms
        with open(self.arrivals_log, "w"):
            pass

    def arrivals(self):
        """When each message's first callback arrived, by message id (from its /dlr/<id> path)."""
        time.sleep(0.3)
        found = {}
        with open(self.arrivals_log) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    m = re.match(r"/dlr/(\d+)", parts[1])
                    if m:
                        found.setdefault(int(m.group(1)), float(parts[0]))
        return found

    def arrival_times(self, path):
        """When each request to `path` arrived."""
        time.sleep(0.3)
        with open(self.arrivals_log) as f:
            return sorted(float(p[0]) for p in (line.split() for line in f) if len(p) == 2 and p[1] == path)

    def report(self, measurement, result, target, ok):
        if self.label:
            measurement = f"{self.label}: {measurement}"
        self.rows.append((measurement, result, target, "yes" if ok else ("-" if ok is None else "NO")))
        print(f"  {measurement}: {result}  (target {target})", flush=True)

    def queue_held(self, n, campaign=1, channel="sms"):
        """n delivered messages whose callbacks are recorded but held (callbacks disabled),
        their events rendered by the workers (deferred recording) before this returns. Returns
        where the WAL stood before the messages' INSERT, after its commit (nothing else writes
        meanwhile: the workers render what it records once it has committed), and once every
        event was rendered."""
        self.sql("SELECT callback.disable_campaign_callbacks(%s)", [campaign])
        start = self.lsn()
        self.sql("""INSERT INTO callback.messages (campaign_id, channel, destination, status)
                    SELECT %s, %s, '+1555' || g, 'delivered' FROM generate_series(1, %s) g""", [campaign, channel, n])
        recorded = self.lsn()
        self.wait_for(EVENTS_RENDERED, timeout=n / 1000 + 60, every=0.5)
        return start, recorded, self.lsn()

    def statement_wal(self, statement):
        """Runs `statement`, returning the WAL written from before it to its commit (nothing else
        writes meanwhile: the workers render what it records only once it has committed)."""
        before = self.lsn()
        self.sql(statement)
        return self.lsn() - before

    def lsn(self):
        return int(self.one("SELECT pg_current_wal_lsn() - '0/0'"))

    def wal_files_ready(self, mb):
        """Makes sure the next `mb` MB of WAL go to files ready for them, as on a server that
        has run a while: each WAL segment file past those is made new and written whole (16 MB
        of zeros, `wal_init_zero`) while commits wait, a stall of tens of milliseconds every
        second or two at 5,000 status changes a second. A checkpoint keeps the files it no
        longer needs for reuse, about as many as the WAL written since the one before. With
        fsync off a new file costs only writes into the page cache, not worth a gigabyte of
        scratch WAL. (f3c825b skipped them believing their dirty pages slowed the fast pass's
        million; the cause was a plan of finish.sql, 8d94065.)"""
        if self.one("SHOW fsync") == "off":
            return
        ready = lambda: 16 * self.one("""SELECT count(*) FROM pg_ls_waldir()
                                          WHERE name ~ '^[0-9A-F]{24}$'
                                            AND name > pg_walfile_name(pg_current_wal_lsn())""")
        if ready() >= mb:
            return
        self.sql("CHECKPOINT")
        self.sql("CREATE TABLE public.bench_wal (t text)")
        # Rows of 992 bytes: below the size that TOAST would compress, so each writes its whole size.
        self.sql("INSERT INTO public.bench_wal SELECT repeat(md5(g::text), 31) FROM generate_series(1, %s) g",
                 [mb * 1024])
        self.sql("DROP TABLE public.bench_wal")
        self.sql("CHECKPOINT")
        print(f"    ({ready()} MB of WAL files ready)", flush=True)

    def sizes(self, *tables):
        """Bytes of these tables of the callback schema, indexes and TOAST included."""
        return sum(self.one(f"SELECT pg_total_relation_size('callback.{t}')") for t in tables)

    def worker_pids(self):
        return [r[0] for r in self.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_callback worker'")]

    # --- measurements ---------------------------------------------------------------------
    def nginx_rate(self):
        out = subprocess.run(["wrk", "-t2", "-c64", "-d5s", self.receiver + "/"], capture_output=True, text=True,
                             check=True).stdout
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        self.nginx = rate
        self.report("nginx alone (wrk -t2 -c64, keep-alive)", f"{rate:,.0f} req/s", "reference", None)

    def drain(self, n, label, target=0.25, receiver=None):
        """The drain of a backlog of n callbacks, and what it cost on disk at each stage:
        recording (the messages' INSERT, less the same INSERT into a copy of the table without
        pg_callback), rendering (until every event is a held callback), releasing the backlog
        (the bench's own step: rendered callbacks are pending at once in use) and delivery."""
        self.reset(receiver=receiver)
        self.sql("DROP TABLE IF EXISTS public.plain_messages")
        self.sql("CREATE TABLE public.plain_messages (LIKE callback.messages INCLUDING ALL)")
        # The account is what pg_callback's trigger would have taken from the campaign.
        plain = self.statement_wal(f"""INSERT INTO public.plain_messages (account_id, campaign_id, channel, destination, status)
                                       SELECT 1, 1, 'sms', '+1555' || g, 'delivered' FROM generate_series(1, {int(n)}) g""")
        self.sql("DROP TABLE public.plain_messages")
        rendering = time.monotonic()
        start, recorded, rendered = self.queue_held(n)
        rendering = time.monotonic() - rendering
        queue_bytes = self.sizes("requests", "callbacks_undone")
        self.clear_arrivals()
        if self.args.statements:
            self.reset_statements()
        before_release = self.lsn()
        profile = self.start_profile() if self.args.profile else None
        started = time.monotonic()
        self.sql("SELECT callback.enable_campaign_callbacks(1)")
        released = time.monotonic() - started
        after_release = self.lsn()
        samples = []
        stop = threading.Event()
        sampler = threading.Thread(target=self.sample_workers, args=(samples, stop), daemon=True)
        sampler.start()
        # Cheap to ask (the partial index of undone callbacks), and not too often: a count over a
        # million rows would take a core from the workers.
        self.wait_for(DRAINED, timeout=n / 500 + 60, every=0.5)
        stop.set()
        sampler.join()
        wall = time.monotonic() - started
        if profile:
            self.print_profile(profile, label)
        times = sorted(self.arrivals().values())
        span = times[-1] - times[0]
        rate = (len(times) - 1) / span if span > 0 else float("nan")
        ratio = rate / self.nginx if getattr(self, "nginx", None) else float("nan")
        if receiver is None:
            self.drain_rate = rate
        if self.args.statements:
            self.print_statements(len(times))
        end = self.lsn()
        if self.args.wal_stats:
            for stage, since, until in (("recording", start, recorded), ("rendering", recorded, rendered),
                                        ("delivery", after_release, end)):
                self.print_wal(f"{label}, {stage}", since, until, n)
        delivered_wal = end - after_release
        kept_bytes = self.sizes("requests", "callbacks_ended", "deliveries")
        self.report(f"drain {label} ({len(times):,} received)",
                    f"{rate:,.0f}/s, {ratio:.2f} of nginx; {wall:.1f} s to all delivered, {released:.1f} s of them releasing the backlog; "
                    f"inserting and rendering the backlog beforehand: {rendering:.1f} s",
                    f">= {target} of nginx", ratio >= target)
        per = lambda b: f"{b / n:,.0f}"
        recording_wal = recorded - start - plain
        rendering_wal = rendered - recorded
        wal_total = recording_wal + rendering_wal + delivered_wal
        self.report(f"bytes per callback, {label}: WAL",
                    f"{per(wal_total)} (recording {per(recording_wal)}, rendering {per(rendering_wal)}, delivery {per(delivered_wal)}); "
                    f"releasing the held backlog, the bench's own step: {per(after_release - before_release)}",
                    "reference", None)
        self.report(f"bytes per callback, {label}: tables and indexes",
                    f"after rendering (requests and queue) {per(queue_bytes)}; kept after delivery (requests, done and history) {per(kept_bytes)}",
                    "reference", None)
        if receiver is None:
            self.drains[n] = rate
        return times, samples

    def batched(self, n, size=100):
        """The drain measurement for a list that batches its events, `size` to a request. The
        backlog's events are rendered into held batches first (timed apart: what batching costs
        before delivery); the rate is events delivered per second between the first and the
        last request's arrival."""
        self.reset(url_path="/dlr/batch")
        self.sql("SELECT callback.set_batching('list', 1, %s, max_wait => '1 second')", [size])
        self.sql("SELECT callback.disable_campaign_callbacks(1)")
        started = time.monotonic()
        self.sql("""INSERT INTO callback.messages (campaign_id, channel, destination, status)
                    SELECT 1, 'sms', '+1555' || g, 'delivered' FROM generate_series(1, %s) g""", [n])
        self.wait_for(BATCHED, timeout=n / 1000 + 60, every=0.2)
        batching = time.monotonic() - started
        self.clear_arrivals()
        started = time.monotonic()
        self.sql("SELECT callback.enable_campaign_callbacks(1)")
        self.wait_for(DRAINED, timeout=n / 500 + 60, every=0.2)
        wall = time.monotonic() - started
        times = self.arrival_times("/dlr/batch")
        events = self.one("SELECT sum(batch_size) FROM callback.callbacks WHERE state = 'delivered'")
        span = times[-1] - times[0]
        # As for single events: the first arrival starts the span, so it is not counted.
        rate = events * (len(times) - 1) / len(times) / span if span > 0 else float("nan")
        single = getattr(self, "drain_rate", None)
        beside = f"; {rate / single:.1f}x the single-event drain" if single else ""
        self.report(f"batched drain, {size} per request, a backlog of {n:,} ({events:,} events in {len(times):,} requests)",
                    f"{rate:,.0f} events/s ({len(times) / span:,.0f} requests/s){beside}; {wall:.1f} s to all delivered; "
                    f"inserting the backlog and rendering it into batches beforehand: {batching:.1f} s",
                    ">= 100,000 events/s", rate >= 100_000)

    def print_wal(self, what, since, until, n):
        """What the WAL between two positions holds, by kind of record (pg_waldump), per callback."""
        lsn = lambda at: f"{at >> 32:X}/{at & 0xFFFFFFFF:X}"
        out = subprocess.run(["/usr/lib/postgresql/15/bin/pg_waldump", "--stats=record", "-p",
                              os.path.join(self.args.cluster_dir, "data", "pg_wal"), "-s", lsn(since), "-e", lsn(until)],
                             capture_output=True, text=True).stdout
        print(f"  WAL of {what}, per callback (pg_waldump --stats=record):")
        pct = r"\(\s*[\d.]+\)"
        row = re.compile(rf"^(\S+)\s+(\d+)\s+{pct}\s+(\d+)\s+{pct}\s+(\d+)\s+{pct}\s+(\d+)\s+{pct}")
        for line in out.splitlines():
            # Type, records, record bytes, full-page images' bytes, both; each with its share.
            m = row.match(line)
            if m and int(m.group(5)) >= n * 10:
                kind, records, record_bytes, fpi, combined = m.group(1), *map(int, m.groups()[1:])
                print(f"    {kind:<28} {records / n:6.2f} records {record_bytes / n:6.0f} + full pages {fpi / n:5.0f} bytes")

    def start_profile(self):
        """perf sampling every CPU (a software clock: this machine has no hardware counters)."""
        path = os.path.join(self.args.cluster_dir, "..", "bench.perf")
        return path, subprocess.Popen(["perf", "record", "-a", "-F", "999", "-o", path, "-q"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def print_profile(self, profile, label, what="drain"):
        """Where the machine's time went during the drain (or stream): by thread name and
        library, then the functions with the most samples."""
        path, perf = profile
        perf.send_signal(signal.SIGINT)
        perf.wait()
        for sort, lines in (("comm,dso", 16), ("comm,sym", 40)):
            out = subprocess.run(["perf", "report", "-i", path, "--sort", sort, "--stdio", "-q", "--percent-limit", "0.4"],
                                 capture_output=True, text=True).stdout
            print(f"  where the time went, {what} {label} (perf, by {sort}):")
            for line in [l for l in out.splitlines() if l.strip()][:lines]:
                print("    " + line.strip())

    def reset_statements(self):
        self.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.sql("SELECT pg_stat_statements_reset()")

    def print_statements(self, delivered, top=6):
        """The statements that took the most time since the reset, per callback delivered."""
        rows = self.sql("""SELECT calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 70)
                           FROM pg_stat_statements WHERE query NOT LIKE '%%pg_stat_statements%%'
                           ORDER BY total_exec_time DESC LIMIT %s""", [top])
        for calls, total_ms, nrows, query in rows:
            print(f"    {total_ms * 1000 / max(delivered, 1):7.1f} us per callback, {calls:7,} calls, "
                  f"{nrows:9,} rows: {query}", flush=True)

    def https(self):
        """nginx alone over HTTPS, and the drain over HTTPS, beside the plain HTTP figures."""
        out = subprocess.run(["wrk", "-t2", "-c64", "-d5s", self.receiver_tls + "/"], capture_output=True, text=True,
                             check=True).stdout
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        self.report("nginx alone over HTTPS (wrk -t2 -c64, keep-alive)", f"{rate:,.0f} req/s", "reference", None)
        times, _ = self.drain(self.args.backlog, f"a backlog of {self.args.backlog:,} over HTTPS",
                              receiver=self.receiver_tls)
        span = times[-1] - times[0]
        https_rate = (len(times) - 1) / span if span > 0 else float("nan")
        plain = getattr(self, "drain_rate", None)
        if plain:
            ratio = https_rate / plain
            self.report("HTTPS drain against HTTP drain", f"{ratio:.2f}", ">= 0.8", ratio >= 0.8)

    @staticmethod
    def machine_busy():
        """CPU seconds the whole machine has spent busy (not idle, not waiting for I/O)."""
        with open("/proc/stat") as f:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    def pin(self, woken):
        """Once a pgbench run has connected and the workers it woke are running (`woken`: its
        UPDATEs record events): pins pgbench's backends to core 0 and the workers to core 1.
        Returns the workers pinned. Idle workers exit, so they are looked for after the run
        started."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            backends = [r[0] for r in self.sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'")]
            if backends and (pids or not woken):
                break
            time.sleep(0.01)
        else:
            raise RuntimeError("no worker or pgbench backend to pin")
        for pid, core in [(pid, 0) for pid in backends] + [(pid, 1) for pid in pids]:
            subprocess.run(["taskset", "-p", "-c", str(core), str(pid)], capture_output=True, check=True)
        return pids

    def workers_cpu(self):
        """CPU seconds each running worker has used, by pid."""
        used = {}
        for pid in self.worker_pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                pass
        return used

    def sample_workers(self, samples, stop):
        while not stop.wait(1.0):
            # RssAnon: the worker's own memory. VmRSS would also count the shared buffers it
            # has touched, which belong to the whole cluster.
            rss = 0
            for pid in self.worker_pids():
                try:
                    with open(f"/proc/{pid}/status") as f:
                        rss = max(rss, int(re.search(r"RssAnon:\s+(\d+)", f.read()).group(1)))
                except (OSError, AttributeError):
                    pass
            samples.append(rss)

    def backlog_million(self):
        n = self.args.million
        times, samples = self.drain(n, f"a backlog of {n:,}")
        start = times[0]
        per_second = [0] * (int(times[-1] - start) + 1)
        for t in times:
            per_second[int(t - start)] += 1
        steady = per_second[1:-1] or per_second
        ranked = sorted(steady)
        p5, median = ranked[len(ranked) // 20], ranked[len(ranked) // 2]
        self.report("backlog: arrivals per second (min / 5th percentile / median / max)",
                    f"{min(steady):,} / {p5:,} / {median:,} / {max(steady):,}", "steady", None)
        peak = max(samples) / 1024 if samples else float("nan")
        self.report("backlog: worker memory (RssAnon), peak", f"{peak:.0f} MB", "< 100 MB", peak < 100)
        sizes = self.sql("""SELECT pg_size_pretty(pg_total_relation_size('callback.callbacks_undone')),
                                   pg_size_pretty(pg_total_relation_size('callback.requests')),
                                   pg_size_pretty(pg_total_relation_size('callback.callbacks_ended')),
                                   pg_size_pretty(pg_total_relation_size('callback.deliveries'))""")[0]
        self.report("backlog: table sizes after (queue / requests / ended without an attempt / history), indexes included",
                    " / ".join(sizes), "queue as small as the backlog", None)
        base = self.drains.get(self.args.backlog)
        if base:
            self.report(f"growth: the drain of {n:,} against that of {self.args.backlog:,}",
                        f"{self.drains[n] / base:.2f}", ">= 0.8", self.drains[n] / base >= 0.8)

    def latency(self):
        for rate in self.args.rate:
            self.latency_at(rate)

    def latency_at(self, rate):
        """pgbench offers the status UPDATEs at `rate` (Poisson arrivals, `-R`), enough clients
        that each commit's wait for the disk does not cap it; client c's k-th transaction
        updates the (c + clients * k)-th message, so its per-transaction log (`-l`: when each
        transaction completed, the commit included) says when each event committed (nginx logs
        arrivals with the same clock). pgbench, in C, leaves the cores to the database and the
        workers, as an application on another machine would; a Python client took a sixth of
        them at 5,000 statements a second."""
        seconds = self.args.seconds
        clients = max(8, rate // 200)
        per_client = rate * seconds // clients
        n = per_client * clients
        self.reset()
        self.sql("""INSERT INTO callback.messages (campaign_id, channel, destination)
                    SELECT 1, 'sms', '+1555' || g FROM generate_series(1, %s) g""", [n])
        first_id, last_id = self.sql("SELECT min(id), max(id) FROM callback.messages")[0]
        assert last_id - first_id == n - 1, "the messages' ids are not consecutive"
        # The WAL of the measurements before (gigabytes, after the drains) would make a
        # checkpoint fall in this one's seconds: done now, so each run measures the same thing.
        self.wal_files_ready(256)
        self.sql("CHECKPOINT")
        self.clear_arrivals()
        if self.args.statements:
            self.reset_statements()
        busy, workers, wal = self.machine_busy(), self.workers_cpu(), self.lsn()
        profile = self.start_profile() if self.args.profile else None
        with tempfile.TemporaryDirectory() as logs:
            script = os.path.join(logs, "update.sql")
            with open(script, "w") as f:
                f.write(f"\\set id {first_id} + :client_id + {clients} * :k\n"
                        "\\set k :k + 1\n"
                        "UPDATE callback.messages SET status = 'delivered' WHERE id = :id;\n")
            subprocess.run(["pgbench", "-n", "-c", str(clients), "-j", "2", "-R", str(rate), "-t", str(per_client),
                            "-D", "k=0", "-f", script, "-l", "--log-prefix", os.path.join(logs, "tx"),
                            "-h", self.args.cluster_dir, "-p", str(self.args.port), "-U", "postgres", self.args.database],
                           capture_output=True, text=True, check=True)
            committed = {}
            for name in os.listdir(logs):
                if name.startswith("tx"):
                    for line in open(os.path.join(logs, name)):
                        # transaction_no counts the client's transactions run, this one included.
                        client, k, _, _, epoch, micros = map(int, line.split()[:6])
                        assert 1 <= k <= per_client, f"transaction_no {k} out of 1..{per_client}"
                        committed[first_id + client + clients * (k - 1)] = epoch + micros / 1e6
        assert len(committed) == n, f"{len(committed)} transactions logged of {n}"
        wall_start = min(committed.values())
        offered = n / (max(committed.values()) - wall_start)
        self.wait_for(DRAINED, timeout=60)
        busy, wal = self.machine_busy() - busy, self.lsn() - wal
        if profile:
            self.print_profile(profile, f"offered at {rate:,} events/s", what="a stream")
        workers = sum(used - workers.get(pid, 0) for pid, used in self.workers_cpu().items())
        if self.args.statements:
            self.print_statements(n, top=12)
        arrived = self.arrivals()
        # The workers are not running when the first event commits (idle workers exit): the
        # first second includes starting them, and is reported apart from the steady state.
        steady_from = wall_start + 1.0
        first = min(committed, key=committed.get)
        latencies = sorted((arrived[i] - committed[i]) * 1000 for i in committed
                           if i in arrived and committed[i] >= steady_from)
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[int(len(latencies) * 0.99)]
        limit = 5 if rate <= 1000 else 20
        self.report(f"latency at {offered:,.0f} events/s offered: p50", f"{p50:.1f} ms", "reference", None)
        self.report(f"latency at {offered:,.0f} events/s offered: p99", f"{p99:.1f} ms", f"< {limit} ms", p99 < limit)
        self.report(f"CPU per event at {offered:,.0f} events/s: the machine (pgbench and nginx included) / the workers",
                    f"{busy * 1e6 / n:.0f} / {workers * 1e6 / n:.0f} us", "reference", None)
        self.report(f"WAL per event at {offered:,.0f} events/s, from the status UPDATE to the callback delivered",
                    f"{wal / n:,.0f} B", "reference", None)
        self.report("latency of the first event, workers started by it", f"{(arrived[first] - committed[first]) * 1000:.1f} ms",
                    "reference", None)

    def recording_cost(self):
        """pgbench: the same status UPDATE on callback.messages (recording each time) and on a
        copy of the table without pg_callback's triggers. The cost to the UPDATE is measured
        with one client, which is what the application waits for: with deferred recording the
        workers render on the other core meanwhile, as they would on a server. Two clients,
        which take both cores, show the machine's capacity instead (reference). One client
        again with the workers on a core of their own, and pgbench and its backend on the other
        (the plain UPDATE's too), as on a server whose cores are not all busy (reference): here
        the workers share two cores with the application's client and session."""
        self.reset()
        self.sql("SELECT callback.disable_campaign_callbacks(1)")  # measure recording, not delivery
        rows = 10_000
        self.sql("""INSERT INTO callback.messages (campaign_id, channel, destination, status)
                    SELECT 1, 'sms', '+1555' || g, 'delivered' FROM generate_series(1, %s) g""", [rows])
        self.sql("DROP TABLE IF EXISTS public.plain_messages")
        self.sql("CREATE TABLE public.plain_messages (LIKE callback.messages INCLUDING ALL)")
        self.sql("INSERT INTO public.plain_messages OVERRIDING SYSTEM VALUE SELECT * FROM callback.messages")
        self.sql("VACUUM ANALYZE callback.messages, public.plain_messages")
        # Nine rounds of each with both recordings write about a gigabyte of WAL, pg_callback's
        # three times the plain UPDATE's: into files made new, that would weigh on it alone.
        self.wal_files_ready(1024)
        default = self.one("SELECT boot_val FROM pg_settings WHERE name = 'pg_callback.recording'")
        other = "immediate" if default == "deferred" else "deferred"

        def tps(table, clients, recording, pinned=False):
            """pinned: pgbench and its backend on core 0, the workers on core 1."""
            with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
                script.write(f"\\set id random(1, {rows})\n"
                             f"UPDATE {table} SET status = CASE status WHEN 'delivered' THEN 'read' ELSE 'delivered' END "
                             f"WHERE id = :id;\n")
            run = subprocess.Popen((["taskset", "-c", "0"] if pinned else []) +
                                   ["pgbench", "-n", "-T", str(self.args.pgbench_seconds), "-c", str(clients),
                                    "-j", str(clients), "-f", script.name, "-h", self.args.cluster_dir,
                                    "-p", str(self.args.port), "-U", "postgres", self.args.database],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "PGOPTIONS": f"-c pg_callback.recording={recording}"})
            workers = self.pin(woken=table == "callback.messages") if pinned else []
            out, err = run.communicate()
            for pid in workers:
                subprocess.run(["taskset", "-p", "-c", f"0-{os.cpu_count() - 1}", str(pid)], capture_output=True)
            os.unlink(script.name)
            if run.returncode:
                raise RuntimeError(f"pgbench failed: {err}")
            return float(re.search(r"tps = ([\d.]+)", out).group(1))

        # Alternated, three rounds: this machine's speed drifts over minutes; the median ratio.
        for clients in (1, 2):
            rounds = [(tps("public.plain_messages", clients, default), tps("callback.messages", clients, default),
                       tps("callback.messages", clients, other)) for _ in range(3)]
            plain, by_default, by_other = (statistics.median(r[i] for r in rounds) for i in range(3))
            ratio = statistics.median(r[0] / r[1] for r in rounds)
            ratio_other = statistics.median(r[0] / r[2] for r in rounds)
            label = "one client (the UPDATE's own cost)" if clients == 1 else "two clients (both cores: capacity)"
            self.report(f"status UPDATE, {label}: without pg_callback", f"{plain:,.0f} tps", "reference", None)
            self.report(f"status UPDATE, {label}: recording {default} (default)",
                        f"{by_default:,.0f} tps, {ratio:.2f}x the cost",
                        "<= 1.15x" if clients == 1 else "reference", ratio <= 1.15 if clients == 1 else None)
            self.report(f"status UPDATE, {label}: recording {other}",
                        f"{by_other:,.0f} tps, {ratio_other:.2f}x the cost", "reference", None)
        # One client, deferred recording, the workers on a core of their own: alternated as above.
        rounds = [(tps("public.plain_messages", 1, default, pinned=True), tps("callback.messages", 1, default, pinned=True))
                  for _ in range(3)]
        ratio = statistics.median(r[0] / r[1] for r in rounds)
        self.report(f"status UPDATE, one client, recording {default}, the workers on a core of their own "
                    "(pgbench and its backend on the other)",
                    f"{statistics.median(r[1] for r in rounds):,.0f} tps, {ratio:.2f}x the cost", "reference", None)
        self.wait_for(EVENTS_RENDERED, timeout=120, every=0.5)
        self.report("recorded meanwhile", f"{self.one('SELECT count(*) FROM callback.callbacks'):,} callbacks", "reference", None)
        self.sql("DROP TABLE public.plain_messages")

    def idle(self):
        self.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.wait_for("SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_callback worker'", timeout=30)
        self.sql("SELECT pg_stat_statements_reset()")
        time.sleep(10)
        # Every statement but these two bench queries (the filter keeps itself out).
        calls = self.one("""SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
                            WHERE query NOT LIKE '%pg_stat_statements%'""")
        self.report("idle 10 s: statements run (pg_stat_statements)", f"{calls}", "0", calls == 0)

    def report_upload(self):
        """A campaign of N recipients ends with report storage set (s3rver on loopback): the
        time until its report is uploaded, and the worker's memory meanwhile (the report is
        streamed a part at a time, never held whole)."""
        n = self.args.report
        self.reset(url_path="/dlr")
        self.sql("UPDATE callback.lists SET callback_url = NULL")
        self.sql("INSERT INTO callback.messages (campaign_id, channel, destination, status) "
                 "SELECT 1, 'sms', '+1555' || g, 'delivered' FROM generate_series(1, %s) g", [n])
        self.wait_for("SELECT count(*) = 0 FROM callback.events", timeout=600, every=0.5)
        storage = {"report_bucket": "reports", "report_endpoint": f"http://127.0.0.1:{self.args.s3_port}",
                   "report_access_key_id": "S3RVER", "report_secret_access_key": "S3RVER"}
        for name, value in storage.items():
            self.sql(f"ALTER SYSTEM SET pg_callback.{name} = '{value}'")
        self.sql("SELECT pg_reload_conf()")
        time.sleep(1)
        samples, stop = [], threading.Event()
        sampler = threading.Thread(target=self.sample_workers, args=(samples, stop))
        sampler.start()
        started = time.monotonic()
        try:
            self.sql("UPDATE callback.campaigns SET status = 'completed' WHERE id = 1")
            self.wait_for("SELECT state <> 'pending' FROM callback.campaign_reports", timeout=900, every=0.2)
            seconds = time.monotonic() - started
        finally:
            stop.set()
            sampler.join()
            for name in storage:
                self.sql(f"ALTER SYSTEM RESET pg_callback.{name}")
            self.sql("SELECT pg_reload_conf()")
        state, size = self.sql("SELECT state, bytes FROM callback.campaign_reports")[0]
        mb = (size or 0) / 1e6
        self.report(f"report of {n:,} recipients uploaded ({state})", f"{mb:.0f} MB in {seconds:.1f} s "
                    f"({mb / seconds:.0f} MB/s), campaign.complete then recorded", "uploaded", state == "uploaded")
        peak = max(samples) / 1024 if samples else float("nan")
        self.report("report: worker memory (RssAnon), peak", f"{peak:.0f} MB", "< 100 MB", peak < 100)

    def fair_sharing(self):
        """A fast endpoint's drain rate with a slow one (2 s per answer) queued beside it."""
        slow = subprocess.Popen(["python3", os.path.join(os.path.dirname(__file__), "slow_receiver.py"),
                                 str(self.args.slow_port), str(SLOW_SECONDS)])
        try:
            n = self.args.fair
            self.reset()
            self.sql("INSERT INTO callback.lists (account_id, name, callback_url) VALUES (1, 'slow', %s)",
                     [f"http://127.0.0.1:{self.args.slow_port}/slow/${{id}}"])
            self.sql("INSERT INTO callback.campaigns (list_id, name) VALUES (2, 'slow')")
            self.queue_held(n // 10, campaign=2)
            self.queue_held(n, campaign=1)
            self.clear_arrivals()
            self.sql("SELECT callback.enable_campaign_callbacks(2)")
            time.sleep(0.5)
            if self.args.statements:
                self.reset_statements()
            profile = self.start_profile() if self.args.profile else None
            self.sql("SELECT callback.enable_campaign_callbacks(1)")
            released = time.time()  # committed; nginx logs arrivals by the same clock
            self.wait_for("SELECT NOT EXISTS (SELECT FROM callback.callbacks_undone WHERE campaign_id = 1)",
                          timeout=n / 100 + 60, every=0.5)
            if profile:
                self.print_profile(profile, f"of {n:,} beside a slow endpoint's backlog")
            times = sorted(self.arrivals().values())
            if self.args.statements:
                self.print_statements(len(times))
            # Between the first arrival and the last, as the drain measurement counts it.
            rate = (len(times) - 1) / (times[-1] - times[0])
            # Not starved: about the rate it drains at with no slow endpoint (the drain measurement).
            alone = getattr(self, "drain_rate", None)
            result = f"{rate:,.0f}/s" + (f", {rate / alone:.2f} of its rate alone" if alone else "")
            self.report(f"fair sharing: fast endpoint's drain of {n:,} beside a slow endpoint's backlog",
                        result, ">= 0.8 of its rate alone", rate >= 0.8 * alone if alone else None)
            # Nor kept waiting: its first callback arrives before the slow endpoint answers.
            first = (times[0] - released) * 1000
            self.report("fair sharing: the fast endpoint's first callback, after its release committed",
                        f"{first:,.0f} ms", f"< {SLOW_SECONDS * 1000:,.0f} ms (the slow endpoint's answer)",
                        first < SLOW_SECONDS * 1000)
        finally:
            slow.terminate()

    def table(self):
        width = max(len(r[0]) for r in self.rows)
        rwidth = max(len(r[1]) for r in self.rows)
        twidth = max(len(r[2]) for r in self.rows)
        print()
        print(f"| {'measurement'.ljust(width)} | {'result'.ljust(rwidth)} | {'target'.ljust(twidth)} | met |")
        print(f"|{'-' * (width + 2)}|{'-' * (rwidth + 2)}|{'-' * (twidth + 2)}|-----|")
        for m, r, t, ok in self.rows:
            print(f"| {m.ljust(width)} | {r.ljust(rwidth)} | {t.ljust(twidth)} | {ok.ljust(3)} |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cluster-dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--database", default="postgres")
    p.add_argument("--nginx-dir", required=True)
    p.add_argument("--nginx-port", type=int, required=True)
    p.add_argument("--nginx-tls-port", type=int, required=True)
    p.add_argument("--slow-port", type=int, default=58092)
    p.add_argument("--backlog", type=int, default=100_000)
    p.add_argument("--million", type=int, default=1_000_000)
    p.add_argument("--fair", type=int, default=50_000)
    p.add_argument("--report", type=int, default=1_000_000)
    p.add_argument("--s3-port", type=int, default=58094)
    p.add_argument("--rate", type=int, nargs="*", default=[1000, 5000], help="the latency measurement's offered rates")
    p.add_argument("--small", type=int, default=10_000, help="the smaller backlog drained, for the growth table")
    p.add_argument("--label", default="", help="what the run's rows are labelled with (bench/run.sh: the durability settings)")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--statements", action="store_true",
                   help="after each drain and latency measurement, the statements that took the most time (pg_stat_statements)")
    p.add_argument("--wal-stats", action="store_true",
                   help="after each drain, what its WAL holds by kind of record (pg_waldump)")
    p.add_argument("--profile", action="store_true",
                   help="during each drain and stream, where the machine's time went (perf record -a)")
    p.add_argument("--pgbench-seconds", type=int, default=15)
    p.add_argument("--only", nargs="*", help="run only these measurements")
    args = p.parse_args()
    bench = Bench(args)
    steps = {
        "nginx": bench.nginx_rate,
        "drain": lambda: [bench.drain(n, f"a backlog of {n:,}") for n in (args.small, args.backlog)],
        "batched": lambda: bench.batched(args.backlog),
        "https": bench.https,
        "latency": bench.latency,
        "recording": bench.recording_cost,
        "fair": bench.fair_sharing,
        "million": bench.backlog_million,
        "idle": bench.idle,
        "report": bench.report_upload,
    }
    for name, step in steps.items():
        if not args.only or name in args.only:
            print(f"== {name}", flush=True)
            step()
    bench.table()


if __name__ == "__main__":
    main()
