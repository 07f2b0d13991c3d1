-- The newest refresh token of each OAuth chain a CRM rotates (Salesforce's refresh token
-- rotation): every worker process, and the next start, signs in with it. ``chain`` is a
-- one-way digest of the client id and the configured refresh token, never a token.

CREATE TABLE IF NOT EXISTS refresh_tokens (
        crm TEXT NOT NULL,
        chain TEXT NOT NULL,
        refresh_token TEXT NOT NULL,
        rotated_at TIMESTAMP WITH TIME ZONE NOT NULL,
        PRIMARY KEY (crm, chain));
