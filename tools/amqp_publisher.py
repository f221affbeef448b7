#!/usr/bin/env python3
"""An independent AMQP publisher that behaves like rabbitmq-perf-test's producer with
`--confirm WINDOW -f persistent -s SIZE -C COUNT`: one connection, one channel in confirm mode,
at most WINDOW unconfirmed messages (a new message goes out as soon as a confirm frees a place),
persistent messages of SIZE bytes whose first bytes carry a sequence number and a timestamp
(rewritten per message, as perf-test does), multiple acks honoured.

It is the reference `make bench-harness` compares `brokerbench produce --rabbitmq` against.
pika's SelectConnection (callbacks on one I/O loop, no future per message) is the closest Python
has to perf-test's producer loop; see docs/harness-performance.md for why not aio-pika.

Prints one line at the end:
  total: sent N confirmed C nacked K in T s: R msg/s confirmed
Exit status: 0 when every message was confirmed, 1 otherwise, 2 on bad arguments.
"""

import argparse
import struct
import sys
import time

import pika


class Publisher:
    def __init__(self, args):
        self.a = args
        self.sent = 0
        self.confirmed = 0
        self.nacked = 0
        # Delivery tags are 1, 2, ...: `low` is the lowest tag not yet settled, `early` holds
        # tags above it settled one by one (a multiple ack settles everything up to its tag).
        self.low = 1
        self.early = set()
        self.t0 = None
        self.t1 = None
        self.error = None
        self.channel = None
        self.body = bytearray(b"x" * args.size)
        self.props = pika.BasicProperties(delivery_mode=2)
        params = pika.URLParameters(args.url)
        self.conn = pika.SelectConnection(
            params,
            on_open_callback=self.on_open,
            on_open_error_callback=self.on_open_error,
            on_close_callback=self.on_closed,
        )

    def run(self):
        self.conn.ioloop.call_later(self.a.timeout, self.on_timeout)
        self.conn.ioloop.start()

    # -- connection and channel -------------------------------------------------------------
    def on_open(self, conn):
        conn.channel(on_open_callback=self.on_channel)

    def on_open_error(self, _conn, err):
        self.error = f"cannot connect to {self.a.url}: {err}"
        self.conn.ioloop.stop()

    def on_closed(self, _conn, reason):
        if self.error is None and self.t1 is None:
            self.error = f"connection closed: {reason}"
        self.conn.ioloop.stop()

    def on_channel(self, channel):
        self.channel = channel
        channel.add_on_close_callback(self.on_channel_closed)
        channel.queue_delete(self.a.queue, callback=self.on_deleted)

    def on_channel_closed(self, _channel, reason):
        if self.t1 is None and self.error is None:
            self.error = f"channel closed: {reason}"
        if self.conn.is_open:
            self.conn.close()

    def on_deleted(self, _frame):
        self.channel.queue_declare(
            self.a.queue,
            durable=True,
            arguments={"x-queue-type": self.a.queue_type},
            callback=self.on_declared,
        )

    def on_declared(self, _frame):
        self.channel.confirm_delivery(self.on_confirm, callback=self.on_confirm_mode)

    def on_confirm_mode(self, _frame):
        self.t0 = time.monotonic()
        self.publish()

    # -- the window ---------------------------------------------------------------------------
    def publish(self):
        a = self.a
        body = self.body
        while self.sent - self.confirmed - self.nacked < a.window and self.sent < a.count:
            self.sent += 1
            # perf-test's body starts with the sequence number and the send time.
            struct.pack_into(">iq", body, 0, self.sent, time.monotonic_ns())
            self.channel.basic_publish("", a.queue, bytes(body), self.props)

    def settle(self, tag, multiple):
        """How many messages this ack or nack settles."""
        if multiple:
            n = 0
            while self.low <= tag:
                if self.low in self.early:
                    self.early.discard(self.low)
                else:
                    n += 1
                self.low += 1
            return n
        if tag < self.low or tag in self.early:
            return 0
        if tag == self.low:
            self.low += 1
            while self.low in self.early:
                self.early.discard(self.low)
                self.low += 1
        else:
            self.early.add(tag)
        return 1

    def on_confirm(self, frame):
        m = frame.method
        n = self.settle(m.delivery_tag, m.multiple)
        if isinstance(m, pika.spec.Basic.Ack):
            self.confirmed += n
        else:
            self.nacked += n
        if self.confirmed + self.nacked >= self.a.count:
            self.t1 = time.monotonic()
            self.finish()
        else:
            self.publish()

    def finish(self):
        if self.a.delete:
            self.channel.queue_delete(self.a.queue, callback=lambda _f: self.conn.close())
        else:
            self.conn.close()

    def on_timeout(self):
        if self.t1 is None:
            self.error = f"not done within {self.a.timeout} s"
            if self.conn.is_open:
                self.conn.close()
            else:
                self.conn.ioloop.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    p.add_argument("--queue", default="bb-bench-pika")
    p.add_argument("--queue-type", default="quorum", choices=["quorum", "classic", "stream"])
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--window", type=int, default=256, help="unconfirmed messages at most")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many s")
    p.add_argument("--keep", dest="delete", action="store_false", help="keep the queue")
    a = p.parse_args()
    if a.count < 1 or a.size < 12 or a.window < 1 or a.timeout <= 0:
        p.error("--count and --window must be at least 1, --size at least 12, --timeout > 0")
    pub = Publisher(a)
    pub.run()
    if pub.t0 is not None:
        end = pub.t1 if pub.t1 is not None else time.monotonic()
        secs = max(end - pub.t0, 1e-9)
        print(
            f"total: sent {pub.sent} confirmed {pub.confirmed} nacked {pub.nacked} "
            f"in {secs:.3f} s: {pub.confirmed / secs:.0f} msg/s confirmed",
            flush=True,
        )
    if pub.error:
        print(f"error: {pub.error}", file=sys.stderr)
    return 0 if pub.confirmed == a.count else 1


if __name__ == "__main__":
    sys.exit(main())
