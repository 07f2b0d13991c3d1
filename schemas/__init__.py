"""Message values: the CloudEvents envelope, every inbound and outbound event of the contract,
and the failure tree. Imports nothing of ours; everything else imports it."""
