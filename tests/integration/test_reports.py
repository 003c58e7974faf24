"""Campaign reports in object storage (seed 003's report_url): with a bucket set, a campaign's
end waits for its report to be uploaded to an S3-compatible server started here (s3rver,
checking every request's SigV4 signature), then campaign.complete carries report_url, a
presigned link that downloads the same CSV as callback.campaign_report_csv(). A report the
storage refuses for good sends campaign.complete with report_url null and why."""

import urllib.request
from pathlib import Path

import psycopg
import pytest

from conftest import ObjectStorage, sigv4_query_signature_valid
from helpers import make_list


@pytest.fixture
def storage():
    s = ObjectStorage().up()
    yield s
    s.down()


def end_campaign(db, receiver, messages):
    """Campaign 1 with `messages` messages, ended; its list's URL takes campaign.complete."""
    make_list(db, receiver.url("/dlr"), callback_events=["campaign.complete"])
    db.sql("""INSERT INTO callback.messages (campaign_id, channel, destination, status, callback_data)
              SELECT 1, 'sms', '+1555' || g, CASE WHEN g %% 3 = 0 THEN 'failed' ELSE 'delivered' END,
                     CASE WHEN g %% 2 = 0 THEN 'order "' || g || '", with a comma' END
              FROM generate_series(1, %s) g""", [messages])
    db.sql("UPDATE callback.campaigns SET status = 'completed' WHERE id = 1")


def complete(receiver):
    return receiver.wait_for(1, "/dlr", timeout=60)[0].json()["data"]


def test_campaign_complete_carries_a_link_that_downloads_the_report(db, receiver, storage, settings):
    settings(**storage.settings(), report_link_ttl="1h")
    end_campaign(db, receiver, 7)
    data = complete(receiver)
    assert data["recipients"] == 7 and "report_error" not in data
    link = data["report_url"]
    assert link.startswith(f"{storage.url}/reports/pg_callback/account-1/campaign-1.csv?") and "X-Amz-Expires=3600" in link
    downloaded = urllib.request.urlopen(link).read().decode()
    assert downloaded == db.one("SELECT callback.campaign_report_csv(1)")
    assert downloaded.count("\r\n") == 8 and '"order ""2"", with a comma"' in downloaded
    # Every request the workers made carried a valid signature.
    assert storage.requests and all(valid for _, _, valid in storage.requests)
    state, key, size = db.sql("SELECT state, object_key, bytes FROM callback.campaign_reports")[0]
    assert (state, key, size) == ("uploaded", "pg_callback/account-1/campaign-1.csv", len(downloaded.encode()))


def test_a_report_larger_than_a_part_goes_up_in_parts(db, receiver, storage, settings):
    """120,000 recipients make some 10 MB of CSV: more than one 8 MiB part."""
    settings(**storage.settings())
    end_campaign(db, receiver, 120_000)
    link = complete(receiver)["report_url"]
    downloaded = urllib.request.urlopen(link).read()
    assert len(downloaded) > 8 * 1024 * 1024
    assert downloaded.decode() == db.one("SELECT callback.campaign_report_csv(1)")


def test_a_signature_the_storage_refuses_sends_the_event_without_a_link(db, receiver, storage, settings):
    settings(**storage.settings(secret="not-the-secret"))
    end_campaign(db, receiver, 3)
    data = complete(receiver)
    assert data["report_url"] is None
    assert data["report_error"] == "storage answered HTTP 403 (SignatureDoesNotMatch)"
    assert db.one("SELECT state FROM callback.campaign_reports") == "failed"


def test_without_a_bucket_campaign_complete_goes_at_once_without_a_link(db, receiver):
    end_campaign(db, receiver, 2)
    data = complete(receiver)
    assert "report_url" not in data
    assert db.one("SELECT count(*) FROM callback.campaign_reports") == 0


def test_bucket_names_s3_would_refuse_are_refused(cluster):
    for bad in ["Reports", "ab", "192.168.0.1"]:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            cluster.sql(f"ALTER SYSTEM SET pg_callback.report_bucket = '{bad}'", dbname="postgres")


def test_the_gate_checks_signatures_as_botocore_makes_them():
    """The storage's signature check itself: a link botocore presigns passes, one with another
    secret, a changed key or expired does not."""
    import botocore.session
    from botocore.config import Config

    def presign(secret, key="a.csv", expires=60):
        client = botocore.session.get_session().create_client(
            "s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1", aws_access_key_id="S3RVER",
            aws_secret_access_key=secret, config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        return client.generate_presigned_url("put_object", Params={"Bucket": "reports", "Key": key}, ExpiresIn=expires)

    assert sigv4_query_signature_valid("PUT", presign("S3RVER"), "S3RVER", "S3RVER")
    assert not sigv4_query_signature_valid("PUT", presign("other"), "S3RVER", "S3RVER")
    assert not sigv4_query_signature_valid("PUT", presign("S3RVER").replace("a.csv", "b.csv"), "S3RVER", "S3RVER")
    assert not sigv4_query_signature_valid("GET", presign("S3RVER"), "S3RVER", "S3RVER")
    import datetime
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=120)
    assert not sigv4_query_signature_valid("PUT", presign("S3RVER"), "S3RVER", "S3RVER", now=later)


def test_credentials_without_a_bucket_are_refused(cluster, settings):
    auto_conf = Path(cluster.dir) / "data" / "postgresql.auto.conf"
    before = auto_conf.read_text()
    for name in ("report_access_key_id", "report_secret_access_key"):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
            cluster.sql(f"ALTER SYSTEM SET pg_callback.{name} = 'AKIAEXAMPLE'", dbname="postgres")
        assert "report_bucket is not set" in refused.value.diag.message_detail
    assert auto_conf.read_text() == before
    # After the bucket (reloaded or not yet, as ALTER SYSTEM is usually run), they are taken.
    settings(report_bucket="reports", report_access_key_id="AKIAEXAMPLE", report_secret_access_key="secret")
    assert cluster.one("SELECT current_setting('pg_callback.report_access_key_id')") == "AKIAEXAMPLE"
