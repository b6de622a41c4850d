"""Check and correct a count's animals in the browser, and export what reviewers finished.

``herdcount review --count OUT`` serves the review of the count job's output OUT (made in
OUT/review/ the first time: a seeded calibration sample, then the photos most in need of a
look). ``herdcount review --export OUT`` writes OUT/review/corrections.csv (the photos marked
done, as a points annotation file for ``herdcount extract --annotations``) and
OUT/review/calibration.csv (the true counts of the sample's done photos, for
``herdcount count --calibration``).
"""

from __future__ import annotations

import argparse
import sys

from herdcount.cli import HelpFormatter
from herdcount.options import add_options, from_args

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from herdcount.review import ReviewSettings

    parser = argparse.ArgumentParser(
        prog="herdcount review", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--count", metavar="OUT", help="serve the review of this count job's output")
    what.add_argument("--export", metavar="OUT", help="write the review's corrections and calibration counts")
    add_options(parser, ReviewSettings)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from herdcount.review import ReviewSettings, export_review, make_review, review_dir
    from herdcount.review_store import ReviewStore

    settings = from_args(ReviewSettings, args)

    try:
        if args.export:
            done = export_review(ReviewStore(review_dir(args.export) / "review.sqlite"))
            print(f"review: {done.photos} photos done, {done.animals} animals -> {done.points}")
            if done.calibration:
                print(
                    f"review: {done.sampled_done} of {done.sampled} sampled photos done -> {done.calibration}"
                )
            else:
                print(
                    f"review: {done.sampled_done} of {done.sampled} sampled photos done; a calibration needs 2 "
                    "(no calibration.csv written)"
                )
            return 0
        store = make_review(args.count, settings.images, sample=settings.sample, seed=settings.seed)
    except (ValueError, FileNotFoundError) as exc:
        print(f"review: {exc}", file=sys.stderr)
        return 2
    return serve(store, settings.host, settings.port, images=settings.images)


def serve(store, host: str, port: int, *, images: str | None = None) -> int:
    import uvicorn

    from herdcount.review_app import make_app, new_token

    token = None if host in LOOPBACK else new_token()
    photos = store.photos()
    sampled = sum(p["sampled"] for p in photos)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(
        f"review: {len(photos)} photos ({sampled} in the calibration sample), {store.path}\n"
        f"review: open {url}" + ("  (the token is printed only this once)" if token else ""),
        flush=True,
    )
    uvicorn.run(make_app(store, token=token, images=images), host=host, port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
