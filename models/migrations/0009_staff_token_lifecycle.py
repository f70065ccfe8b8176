from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

# Staff tokens get a life cycle (issue 10): when the current token was issued (expiry is
# counted from it), when it was last used, and when it was revoked.


class Migration(migrations.Migration):
    dependencies = [("models", "0008_one_owner_of_patient_state")]

    initial = False

    operations = [
        ops.AddField(
            model_name='StaffUser',
            name='token_issued_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='StaffUser',
            name='last_used_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='StaffUser',
            name='revoked_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
