"""consent wordings: what a person was shown, kept per version and cited by each choice

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('consent_wordings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('wording_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('first_shown_at_us', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_consent_wordings_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_wordings')),
    sa.UniqueConstraint('tenant_id', 'wording_id', 'version', name=op.f('uq_consent_wordings_tenant_id_wording_id_version'))
    )
    with op.batch_alter_table('consent_events') as batch:
        batch.add_column(sa.Column('wording_id', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('wording_version', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('consent_events') as batch:
        batch.drop_column('wording_version')
        batch.drop_column('wording_id')
    op.drop_table('consent_wordings')
