"""desk sign-in: users with a password and a role, and browser sessions

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'desk_users',
        sa.Column('id', _ID, nullable=False),
        sa.Column('tenant_id', _ID, nullable=False),
        sa.Column('username', sa.String(length=200), nullable=False),
        sa.Column('password_hash', sa.String(length=300), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('created_at_us', sa.BigInteger(), nullable=False),
        sa.Column('disabled_at_us', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name='fk_desk_users_tenant_id_tenants'),
        sa.PrimaryKeyConstraint('id', name='pk_desk_users'),
        sa.UniqueConstraint('tenant_id', 'username', name='uq_desk_users_tenant_id_username'),
    )
    op.create_table(
        'desk_sessions',
        sa.Column('id', _ID, nullable=False),
        sa.Column('tenant_id', _ID, nullable=False),
        sa.Column('session_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', _ID, nullable=True),
        sa.Column('api_key_id', _ID, nullable=True),
        sa.Column('csrf_token', sa.String(length=64), nullable=False),
        sa.Column('created_at_us', sa.BigInteger(), nullable=False),
        sa.Column('expires_at_us', sa.BigInteger(), nullable=False),
        sa.Column('ended_at_us', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name='fk_desk_sessions_tenant_id_tenants'),
        sa.ForeignKeyConstraint(['user_id'], ['desk_users.id'], name='fk_desk_sessions_user_id_desk_users'),
        sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name='fk_desk_sessions_api_key_id_api_keys'),
        sa.PrimaryKeyConstraint('id', name='pk_desk_sessions'),
        sa.UniqueConstraint('session_hash', name='uq_desk_sessions_session_hash'),
    )


def downgrade() -> None:
    op.drop_table('desk_sessions')
    op.drop_table('desk_users')
