"""what came back after a delivery: bounces and complaints (engine/inbound)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('feedback', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('feedback_at_us', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('soft_bounces', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('soft_bounces')
        batch.drop_column('feedback_at_us')
        batch.drop_column('feedback')
