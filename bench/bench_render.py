"""Render-stage throughput: the precompiled MIME skeleton against an EmailMessage per recipient.

    python -m bench.bench_render [--count 100000] [--baseline-count N] [--sms-count N]
                                 [--dkim-count N] [--json]

Both email paths render the same built-in campaign (spring_offer: text + HTML, bulk, with
List-Unsubscribe and the footer) for the same recipients in the same run, in interleaved
rounds (so both see the same background load), and both build the recipient's context
(which signs an unsubscribe token) inside the timed loop:

- skeleton: `EmailSkeleton.render` → bytes;
- baseline: the same subject/text/html (`EmailSkeleton.render_content`), put into a fresh
  `email.message.EmailMessage` (headers, set_content, add_alternative) and serialised with
  `as_bytes(policy=SMTP)`: what the code would look like without the skeleton.

Also: the Jinja2 share alone (render_content), SMS renders (with segment counting), and
DKIM-signed renders (dkimpy's pure-Python RSA; needs `openssl` to make a key, else skipped).
Rates are per CPU second of this process (`time.process_time`), i.e. per busy core: on a
shared machine wall time mostly measures the neighbours. Still, compare the ratio printed by
one run rather than absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from engine.render import (
    CampaignContext,
    DkimSigner,
    EmailSkeleton,
    SmsRenderer,
    compile_campaign_templates,
    find_templates,
)
from engine.render.headers import format_date

POSTAL = "1 Main St, Springfield, CA 90000, USA"
FIRST_NAMES = ["Ann", "Bob", "Zoë", "José", "Li", "", "Mohammed", "Sofía", "Kai", "Hanako",
               "Olivia", "Liam", "Noah", "Emma", "Ava", "Lucas", "Mia", "Ethan", "Chloé", ""]
LAST_NAMES = ["Lee", "Smith", "García", "Nguyễn", "", "O'Brien", "Müller", "Kim"]
DATE_US = 1_700_000_000_000_000


def _contexts(channel: str) -> CampaignContext:
    return CampaignContext(
        tenant_id=3, campaign_id=1_500, channel=channel, secret=b"bench-secret",
        public_url="https://links.acme.example", tenant_name="Acme Motors",
        postal_address=POSTAL, sender_name="Acme Service", agent_name="Sam",
    )


def _skeleton(dkim: DkimSigner | None = None) -> EmailSkeleton:
    source = find_templates("email", "spring_offer", Path(tempfile.gettempdir()))
    templates = compile_campaign_templates(
        source, subject="{{ first_name or 'Hello' }}, your spring service offer")
    return EmailSkeleton.from_templates(
        templates, sender_email="service@acme.example", sender_name="Acme Service", bulk=True,
        postal_address=POSTAL, unsubscribe_mailto="unsubscribe@acme.example", dkim=dkim,
    )


def _recipient(index: int) -> tuple[str, str, str]:
    first = FIRST_NAMES[index % len(FIRST_NAMES)]
    last = LAST_NAMES[index % len(LAST_NAMES)]
    return first, last, f"customer{index}@example.com"


ROUNDS = 20


def _seconds(indexes: range, run: Callable[[int], object]) -> float:
    """CPU seconds of this process: on a shared machine, wall time mostly measures the
    neighbours; CPU time is what one core spends on the work."""
    start = time.process_time()
    for index in indexes:
        run(index)
    return time.process_time() - start


def _rate(count: int, run: Callable[[int], object]) -> float:
    return count / _seconds(range(count), run)


def bench_email(count: int, baseline_count: int) -> dict[str, float]:
    skeleton = _skeleton()
    contexts = _contexts("email")

    def with_skeleton(index: int) -> bytes:
        first, last, address = _recipient(index)
        context = contexts.for_recipient(index, first_name=first, last_name=last, email=address)
        return skeleton.render(address, f"{first} {last}".strip(), context,
                               f"<c1500.r{index}@acme.example>", DATE_US)

    def with_email_message(index: int) -> bytes:
        first, last, address = _recipient(index)
        context = contexts.for_recipient(index, first_name=first, last_name=last, email=address)
        content = skeleton.render_content(context)
        token = context["unsubscribe_token"]
        message = EmailMessage()
        message["From"] = Address("Acme Service", addr_spec="service@acme.example")
        message["To"] = Address(f"{first} {last}".strip(), addr_spec=address)
        message["Subject"] = content.subject
        message["Date"] = format_date(DATE_US)
        message["Message-ID"] = f"<c1500.r{index}@acme.example>"
        message["List-Unsubscribe"] = (
            f"<mailto:unsubscribe@acme.example?subject=unsubscribe-{token}>, "
            f"<{context['unsubscribe_url']}>"
        )
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(content.text)
        message.add_alternative(content.html or "", subtype="html")
        return message.as_bytes(policy=SMTP)

    def templates_only(index: int) -> object:
        first, last, address = _recipient(index)
        context = contexts.for_recipient(index, first_name=first, last_name=last, email=address)
        return skeleton.render_content(context)

    def context_only(index: int) -> object:
        first, last, address = _recipient(index)
        return contexts.for_recipient(index, first_name=first, last_name=last, email=address)

    with_skeleton(0), with_email_message(0)  # warm up both paths
    # Interleaved rounds: both paths see the same background load, so their ratio holds
    # even on a machine busy with other work.
    skeleton_seconds = baseline_seconds = 0.0
    round_ratios = []
    done = baseline_done = 0
    for round_index in range(ROUNDS):
        block = count * (round_index + 1) // ROUNDS - done
        baseline_block = baseline_count * (round_index + 1) // ROUNDS - baseline_done
        fast = _seconds(range(done, done + block), with_skeleton)
        slow = _seconds(range(baseline_done, baseline_done + baseline_block), with_email_message)
        skeleton_seconds += fast
        baseline_seconds += slow
        if block and baseline_block:
            round_ratios.append((block / fast) / (baseline_block / slow))
        done += block
        baseline_done += baseline_block
    results = {
        "skeleton_per_s": count / skeleton_seconds,
        "email_message_per_s": baseline_count / baseline_seconds,
        "templates_only_per_s": _rate(min(count, 20_000), templates_only),
        "context_only_per_s": _rate(min(count, 20_000), context_only),
        "message_bytes": float(len(with_skeleton(1))),
    }
    results["ratio"] = results["skeleton_per_s"] / results["email_message_per_s"]
    round_ratios.sort()
    results["ratio_median_round"] = round_ratios[len(round_ratios) // 2]
    results["ratio_min_round"] = round_ratios[0]
    results["ratio_max_round"] = round_ratios[-1]
    return results


def bench_sms(count: int) -> dict[str, float]:
    source = find_templates("sms", "live_lead", Path(tempfile.gettempdir()))
    renderer = SmsRenderer.from_templates(
        compile_campaign_templates(source),
        opt_out_footer="Reply STOP to opt out of texts from this number.",
    )
    contexts = _contexts("sms")

    def render(index: int) -> object:
        first, last, _ = _recipient(index)
        context = contexts.for_recipient(index, first_name=first, last_name=last,
                                         phone="+15550001111")
        return renderer.render(context, first_touch=index % 2 == 0)

    return {"sms_per_s": _rate(count, render)}


def bench_dkim(count: int) -> dict[str, float]:
    openssl = shutil.which("openssl")
    if openssl is None or count <= 0:
        return {}
    key = subprocess.run([openssl, "genrsa", "2048"], check=True, capture_output=True).stdout
    skeleton = _skeleton(DkimSigner("bench", "acme.example", key))
    contexts = _contexts("email")

    def signed(index: int) -> bytes:
        first, last, address = _recipient(index)
        context = contexts.for_recipient(index, first_name=first, last_name=last, email=address)
        return skeleton.render(address, first, context, f"<d{index}@acme.example>", DATE_US)

    return {"dkim_rsa2048_per_s": _rate(count, signed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="emails via the skeleton")
    parser.add_argument("--baseline-count", type=int, default=None,
                        help="emails via EmailMessage (default: --count)")
    parser.add_argument("--sms-count", type=int, default=100_000)
    parser.add_argument("--dkim-count", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    baseline = args.baseline_count if args.baseline_count is not None else args.count

    results = {"count": float(args.count), "baseline_count": float(baseline)}
    results |= bench_email(args.count, baseline)
    results |= bench_sms(args.sms_count)
    results |= bench_dkim(args.dkim_count)
    if args.json:
        print(json.dumps({key: round(value, 2) for key, value in results.items()}))
        return 0
    print(f"python {sys.version.split()[0]}, {args.count:,} emails (baseline {baseline:,}), "
          "rates per CPU second")
    print(f"  skeleton render          {results['skeleton_per_s']:>10,.0f} /s")
    print(f"  EmailMessage + as_bytes  {results['email_message_per_s']:>10,.0f} /s")
    print(f"  ratio                    {results['ratio']:>10.1f} x  (per round: median "
          f"{results['ratio_median_round']:.1f}, min {results['ratio_min_round']:.1f}, "
          f"max {results['ratio_max_round']:.1f}; {ROUNDS} interleaved rounds)")
    print(f"  templates alone (Jinja2) {results['templates_only_per_s']:>10,.0f} /s")
    print(f"  context + token alone    {results['context_only_per_s']:>10,.0f} /s")
    print(f"  message size             {results['message_bytes']:>10,.0f} bytes")
    print(f"  sms render + segments    {results['sms_per_s']:>10,.0f} /s ({args.sms_count:,})")
    if "dkim_rsa2048_per_s" in results:
        print(f"  skeleton + DKIM (RSA)    {results['dkim_rsa2048_per_s']:>10,.0f} /s "
              f"({args.dkim_count:,})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
