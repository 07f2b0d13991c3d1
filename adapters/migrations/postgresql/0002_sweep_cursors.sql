-- Where each CRM account's last successful ``provisioner crm reconcile`` ended: the next
-- sweep without --since starts there (less a small overlap).

CREATE TABLE IF NOT EXISTS sweep_cursors (
        crm TEXT NOT NULL,
        account TEXT NOT NULL,
        swept_until TIMESTAMP WITH TIME ZONE NOT NULL,
        PRIMARY KEY (crm, account));
