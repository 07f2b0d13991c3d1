-- Where each CRM account's last successful ``provisioner crm reconcile`` ended: the next
-- sweep without --since starts there (less a small overlap). Timestamps as the store
-- writes them on sqlite: UTC text that sorts as time does.

CREATE TABLE IF NOT EXISTS sweep_cursors (
        crm TEXT NOT NULL,
        account TEXT NOT NULL,
        swept_until DATETIME NOT NULL,
        PRIMARY KEY (crm, account));
