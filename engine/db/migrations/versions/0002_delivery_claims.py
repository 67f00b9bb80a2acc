"""delivery claims with fencing tokens replace the campaign lease

A delivery is handed to a transport only by the runner that claimed it: `claim_token` is
that runner's fencing token (drawn from `campaigns.claim_seq`), `claim_until_us` when the
claim lapses unless renewed. The campaign-wide lease (`runner`, `lease_until_us`) is gone:
any number of runners may work on one campaign.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim_token', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('claim_until_us', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('first_claimed_at_us', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim_seq', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.drop_column('runner')
        batch_op.drop_column('lease_until_us')


def downgrade() -> None:
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until_us', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('runner', sa.String(length=200), nullable=True))
        batch_op.drop_column('claim_seq')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('first_claimed_at_us')
        batch_op.drop_column('claim_until_us')
        batch_op.drop_column('claim_token')
