-- Client certificate $2 of account $1 (sql/certificates.sql), for src/deliver/identities.rs.
SELECT k.certificate, k.private_key FROM callback.client_certificates k WHERE k.account_id = $1 AND k.id = $2
