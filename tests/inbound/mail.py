"""Real inbound mail, written as the MTAs that send it write it: a Postfix DSN (RFC 3464),
a feedback-loop ARF report (RFC 5965), a person's unsubscribe mail."""

from __future__ import annotations


def postfix_dsn(to: str, recipient: str, original_headers: str, *, action: str = "failed", status: str = "5.1.1",
                diagnostic: str = "550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table") -> bytes:
    """What Postfix's bounce daemon sends back to the envelope sender."""
    human = ("I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients."
             if action == "failed" else "Your message could not be delivered for more than 4 hour(s).\nIt will be retried until it is 5 day(s) old.")
    return f"""\
Return-Path: <>
From: MAILER-DAEMON@relay.example (Mail Delivery System)
Subject: {'Undelivered Mail Returned to Sender' if action == 'failed' else 'Delayed Mail (still being retried)'}
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4D1C32A0E5.1718000000/relay.example"
Content-Transfer-Encoding: 7bit
Message-Id: <20240610120000.4D1C32A0E5@relay.example>

This is a MIME-encapsulated message.

--4D1C32A0E5.1718000000/relay.example
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.example.

{human}

                   The mail system

<{recipient}>: host mx.example.com[192.0.2.25] said: {diagnostic} (in
    reply to RCPT TO command)

--4D1C32A0E5.1718000000/relay.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example
X-Postfix-Queue-ID: 4D1C32A0E5
X-Postfix-Sender: rfc822; {to}
Arrival-Date: Mon, 10 Jun 2024 11:59:58 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.com
Diagnostic-Code: smtp; {diagnostic}

--4D1C32A0E5.1718000000/relay.example
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{original_headers.strip()}

--4D1C32A0E5.1718000000/relay.example--
""".replace("\n", "\r\n").encode()


def arf_report(to: str, recipient: str, original: str, feedback_type: str = "abuse") -> bytes:
    """A feedback-loop report: the complaint, and the original message as it was received."""
    return f"""\
From: <staff@fbl.mailbox.example>
Date: Mon, 10 Jun 2024 12:05:00 +0000
Subject: FW: complaint about a message
To: {to}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Mon, 10 Jun 2024 12:00:00 +0000.
For more information about this format please see
http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: MailboxFBL/1.0
Version: 1
Original-Mail-From: <{to}>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Mon, 10 Jun 2024 12:00:00 +0000
Reported-Domain: acme-motors.example
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

{original.strip()}

--part1_13d.2e68ed54_boundary--
""".replace("\n", "\r\n").encode()


def person_mail(sender: str, to: str, subject: str, body: str = "Please take me off your list.") -> bytes:
    return f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n" \
           f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n".encode()
