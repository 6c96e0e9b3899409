"""The daemon's Prometheus metrics (prometheus-client), one registry per daemon.

Counters and histograms are updated where things happen; the gauges that
describe a state (the outbox backlog, AMI) are set just before each scrape
from the store and the AMI connection, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

# Seconds from the caller's hangup to the gateway accepting the text: the delay is 30 s by
# default, so the interesting range is around it.
HANGUP_BUCKETS = (5, 15, 30, 35, 45, 60, 90, 120, 300, 600, 1800, 3600)
ALERT_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)


class _Restarts(Collector):
    """The supervisor's restart counts, read at each scrape: a worker that keeps dying shows."""

    def __init__(self, restarts: Mapping[str, int]):
        self._restarts = restarts

    def collect(self):
        family = CounterMetricFamily("textback_worker_restarts",
                                     "Workers restarted after dying on an error", labels=["worker"])
        for worker, count in sorted(self._restarts.items()):
            family.add_metric([worker], count)
        yield family


class Metrics:
    def __init__(self, worker_restarts: Mapping[str, int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls = Counter("textback_calls_total", "Inbound calls finished, by outcome",
                             ["outcome", "reason", "business_number"], registry=r)
        self.texts = Counter("textback_texts_total", "Texts handed to the gateway, by result",
                             ["status", "gateway"], registry=r)
        self.hangup_to_accepted = Histogram(
            "textback_hangup_to_accepted_seconds",
            "From the missed call's hangup to the gateway accepting its text",
            buckets=HANGUP_BUCKETS, registry=r)
        self.reply_to_alert = Histogram(
            "textback_reply_to_alert_seconds",
            "From a homeowner's text arriving to its owner alert being mailed",
            buckets=ALERT_BUCKETS, registry=r)
        self.pushes = Counter("textback_pushes_total",
                              "Web Push messages to owners' devices, by result (sent, retry, "
                              "gone: the subscription was removed, failed, expired)",
                              ["result"], registry=r)
        self.reply_to_push = Histogram(
            "textback_reply_to_push_seconds",
            "From a homeowner's text arriving to a push service taking its push",
            buckets=ALERT_BUCKETS, registry=r)
        self.outbox_pending = Gauge("textback_outbox_pending", "Texts waiting to be sent",
                                    registry=r)
        self.oldest_due_age = Gauge("textback_outbox_oldest_due_age_seconds",
                                    "How long the oldest due, unsent text has been due (0: none)",
                                    registry=r)
        self.ami_connected = Gauge("textback_ami_connected", "1 while logged in to AMI",
                                   registry=r)
        self.pbx_ami_connected = Gauge("textback_pbx_ami_connected",
                                       "1 while the PBX's AMI is listened to (by this daemon, or "
                                       "by the fleet's daemon holding its lease)", ["pbx"],
                                       registry=r)
        self.ami_event_age = Gauge("textback_ami_last_event_age_seconds",
                                   "Seconds since the last AMI event or answered Ping",
                                   registry=r)
        self.ami_reconnects = Counter("textback_ami_reconnects_total",
                                      "AMI logins after the first", registry=r)
        self.mail_sent = Counter("textback_mail_sent_total", "Emails handed to the SMTP relay",
                                 ["kind"], registry=r)
        self.mail_failed = Counter("textback_mail_failed_total",
                                   "Emails the SMTP relay did not take (each is retried)",
                                   ["kind"], registry=r)
        self.reply_mail = Counter("textback_reply_mail_verdicts_total",
                                  "Owners' email replies, by what became of them", ["verdict"],
                                  registry=r)
        # The provider's callbacks (the metric keeps its name and help, for existing dashboards).
        self.callbacks = Counter("textback_webhook_requests_total",
                                 "Gateway webhook requests, by result", ["gateway", "result"],
                                 registry=r)
        self.incidents_open = Gauge("textback_incidents_open", "Incidents not yet recovered",
                                    registry=r)
        r.register(_Restarts(worker_restarts))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
