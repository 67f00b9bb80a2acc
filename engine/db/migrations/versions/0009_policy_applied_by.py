"""who applied each tenant policy version (the settings API's audit: actor and time)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tenant_policies') as batch:
        batch.add_column(sa.Column('applied_by', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('tenant_policies') as batch:
        batch.drop_column('applied_by')
