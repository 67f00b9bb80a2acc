"""contacts: two indexes no query uses go (first-name search, lead source)

Revision ID: 0015
Revises: 0014

Every index of `contacts` is one more btree insert for every contact an import writes;
on PostgreSQL index maintenance is half of an import's server time (docs/benchmarks.md,
"Sixth pass"). Two of them serve no query:

- `ix_contacts_search_first` (migration 0012, PostgreSQL only): the address book matches a
  first name by its beginning and "first last" by its beginning. Every contact whose
  first name begins with a fragment has a "first last" that begins with it, so
  `engine/api/contact_views.py` now asks only the full-name condition, whose index stays.
- `ix_contacts_tenant_id_lead_source_id` (migration 0001): an audience selects lead
  sources case-insensitively, `lower(lead_source) IN (...)`, which this index on the raw
  column cannot serve; audience pages walk (tenant_id, id).
"""

from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX IF EXISTS ix_contacts_search_first')
    op.execute('DROP INDEX IF EXISTS ix_contacts_tenant_id_lead_source_id')


def downgrade() -> None:
    op.execute('CREATE INDEX IF NOT EXISTS ix_contacts_tenant_id_lead_source_id ON contacts (tenant_id, lead_source, id)')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            'CREATE INDEX IF NOT EXISTS ix_contacts_search_first ON contacts '
            '(tenant_id, lower(first_name) text_pattern_ops, id) INCLUDE (first_name)'
        )
