"""The demo's SMTP relay: a mail server on loopback (aiosmtpd) that prints every email it gets,
standing in for the company's relay that alert emails go through.

    python3 demo/mailer.py PORT"""

import email
import sys
import time

from aiosmtpd.controller import Controller


class Handler:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content)
        body = message.get_payload(decode=True).decode(errors="replace")
        print(f"mailer: to {message['To']}: {message['Subject']}\n" +
              "".join(f"mailer: | {line}\n" for line in body.splitlines()), flush=True)
        return "250 OK"


if __name__ == "__main__":
    controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
    controller.start()
    print(f"mailer: listening on 127.0.0.1:{sys.argv[1]}", flush=True)
    while True:
        time.sleep(3600)
