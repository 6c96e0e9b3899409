"""`make demo`: one missed call, end to end, on the lab PBX.

Starts the lab PBX, a local SMTP server standing in for the company mail
relay, and `textback run` with an SQLite database; a simulated homeowner
calls the business number, nobody answers, the homeowner replies to the
text, and the owner's email arrives. Prints the timeline, then the web
inbox's address and the sign-in link from the owner's email, and serves the
inbox until Ctrl-C; when stdin is not a terminal (CI, a pipe), it shuts
everything down at once.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, lab_config
from textback.core.alerts import one_line
from lab.harness import DaemonProcess, start_smtp_sink, wait_until
from lab.pbx import LabPBX

DELAY_SECONDS = 5
WEB_PORT = 8088
INBOX_URL = f"http://127.0.0.1:{WEB_PORT}"
SIGN_IN_LINK = re.compile(r"https?://\S+/link/\S+")
REPLY = "Yes please! We want to redo our kitchen, budget around $75k. Can someone come by Tuesday?"
TIMELINE = re.compile(r"^\S+ (\d\d:\d\d:\d\d),\d+ INFO +textback\.timeline: (.*)$")


def say(who: str, what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {who:<10} {what}", flush=True)


def follow(daemon: DaemonProcess, stop: threading.Event) -> None:
    """Print the daemon's timeline lines as they are written."""
    seen = 0
    while not stop.is_set():
        lines = daemon.log().splitlines()
        for line in lines[seen:]:
            match = TIMELINE.match(line)
            if match:
                print(f"{match.group(1)}  {'textback':<10} {match.group(2)}", flush=True)
        seen = len(lines)
        time.sleep(0.1)


def serve_until_interrupted() -> None:
    """Keep everything running for a person at a terminal; a pipe or CI ends the demo here."""
    if not sys.stdin.isatty():
        return
    print("\nServing until Ctrl-C…", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print()


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="textback-demo-"))
    print(f"textback demo; working files in {work}\n")
    lab = LabPBX(work / "lab")
    say("lab", "starting the lab PBX (Asterisk 22 in a chroot)…")
    lab.start()
    smtp, smtp_server = start_smtp_sink()
    stop = threading.Event()
    daemon = None
    try:
        config = lab_config(work, lab, **{"text.delay_seconds": DELAY_SECONDS,
                                          "web": {"port": WEB_PORT, "public_url": INBOX_URL}})
        daemon = DaemonProcess(config, work / "textback.log").start()
        threading.Thread(target=follow, args=(daemon, stop), daemon=True).start()
        say("lab", f"textback is running (text delay {DELAY_SECONDS} s, database {work / 'textback.db'})")
        carrier = lab.message_sink()
        phone = lab.phone("office1", "noanswer")
        say("homeowner", f"{HOMEOWNER} calls {BUSINESS_NUMBER}; the office phone rings, nobody answers")
        lab.call(HOMEOWNER, BUSINESS_NUMBER).wait(30)
        phone.kill()
        say("homeowner", "hangs up after the ring timeout")
        [text] = wait_until(carrier.messages, DELAY_SECONDS + 10, "the text at the carrier")
        time.sleep(0.3)
        say("homeowner", f"phone receives a text from {BUSINESS_NUMBER}: {text['body']!r}")
        say("homeowner", f"replies: {REPLY!r}")
        lab.send_sms(HOMEOWNER, BUSINESS_NUMBER, REPLY)
        [mail] = smtp.wait_for(1, 15)
        time.sleep(0.3)
        say("owner", f"inbox: mail to {', '.join(mail.recipients)}, subject {mail.message['Subject']!r}")
        carrier.kill()
        print("\n$ textback thread " + HOMEOWNER)
        subprocess.run([sys.executable, "-m", "textback", "thread", "-c", str(config), HOMEOWNER],
                       check=True)
        body = mail.message.get_body(("plain",)).get_content()
        print("\nThe owner's email (plain-text part):\n")
        print("    " + body.replace("\n", "\n    "))
        link = SIGN_IN_LINK.search(body)
        print(f"\nThe shared inbox: {INBOX_URL}/")
        print(f"Sign in as the owner (the link works once): {one_line(link.group(0), 400)}")
        serve_until_interrupted()
        return 0
    finally:
        stop.set()
        if daemon is not None:
            daemon.stop()
        smtp_server.stop()
        lab.stop()
        print("Everything is shut down.")


if __name__ == "__main__":
    sys.exit(main())
